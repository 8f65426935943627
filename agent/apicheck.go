package agent

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// MaxPathSegment bounds one segment of an API path (a task, entry or
// framework id): longer ones are refused before any handler sees them,
// and never echoed back.
const MaxPathSegment = 256

// catchAll is the pattern that answers 404 for unknown /v1 paths.
const catchAll = "/v1/"

// queryKind is what a query parameter's value must be.
type queryKind int

const (
	qText  queryKind = iota // any string
	qCount                  // a non-negative integer
	qBool                   // 1, 0, true or false
)

// queryParams lists the query parameters each route takes; a route that
// is missing takes none. A nil map takes any (resource attribute filters).
var queryParams = map[string]map[string]queryKind{
	"GET /v1/resources":       nil,
	"GET /v1/ledger/entries":  {"type": qText, "peer": qText, "task": qText, "from": qCount, "limit": qCount, "consistent": qBool},
	"GET /v1/tasks/{id}/logs": {"offset": qCount, "follow": qBool},
	"POST /v1/tasks":          {"name": qText},
	"GET /v1/tasks":           {"state": qText},
	"GET /v1/mesh/find":       {"key": qText, "count": qCount},
	"POST /v1/tasks/plan":     {"name": qText},
	"POST /v1/frameworks":     {"name": qText, "adhere": qBool},
}

// checkRequest refuses, before the handlers run: over-long path
// segments (400), a known path with the wrong method (405 with Allow),
// and unknown or malformed query parameters (400).
func checkRequest(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, seg := range strings.Split(r.URL.Path, "/") {
			if len(seg) > MaxPathSegment {
				writeError(w, http.StatusBadRequest, fmt.Errorf("a path segment is %d bytes long; ids are at most %d", len(seg), MaxPathSegment))
				return
			}
		}
		_, pattern := mux.Handler(r)
		if pattern == catchAll {
			if allow := allowedMethods(mux, r); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s is not allowed on %s; use %s", r.Method, clip(r.URL.Path), strings.Join(allow, " or ")))
				return
			}
		}
		if err := checkQuery(pattern, r); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// allowedMethods lists the methods some route serves on r's path.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := mux.Handler(probe); p != catchAll && p != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

func checkQuery(pattern string, r *http.Request) error {
	if !strings.HasPrefix(r.URL.Path, "/v1/") {
		return nil
	}
	params, known := queryParams[pattern]
	if known && params == nil {
		return nil
	}
	q := r.URL.Query()
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		kind, ok := params[name]
		if !ok {
			if len(params) == 0 {
				return fmt.Errorf("query parameter %q: %s takes none", clip(name), clip(r.URL.Path))
			}
			return fmt.Errorf("query parameter %q is unknown; known: %s", clip(name), strings.Join(sortedNames(params), ", "))
		}
		v := q.Get(name)
		switch kind {
		case qCount:
			if n, err := strconv.ParseUint(v, 10, 63); err != nil || n > 1<<62 {
				return fmt.Errorf("%s=%q: want a non-negative integer", name, clip(v))
			}
		case qBool:
			if _, err := strconv.ParseBool(v); err != nil || (v != "1" && v != "0" && v != "true" && v != "false") {
				return fmt.Errorf("%s=%q: want 1, 0, true or false", name, clip(v))
			}
		}
	}
	return nil
}

func sortedNames(m map[string]queryKind) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// clip shortens what a client sent before it is echoed in an error.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + fmt.Sprintf("… (%d bytes)", len(s))
}
