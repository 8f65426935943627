package agent

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
)

func (a *Agent) ledgerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/ledger/entries", a.handleLedgerEntries)
	mux.HandleFunc("GET /v1/ledger/entries/{key}", a.handleLedgerEntry)
	mux.HandleFunc("GET /v1/ledger/balances", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.ledger.Balances())
	})
	mux.HandleFunc("GET /v1/ledger/members", func(w http.ResponseWriter, r *http.Request) {
		m, err := a.ledger.Members(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /v1/ledger/verify", a.handleLedgerVerify)
	mux.HandleFunc("POST /v1/ledger/admit", a.handleLedgerAdmit)
	mux.HandleFunc("GET /v1/ledger/refused", func(w http.ResponseWriter, _ *http.Request) {
		out := a.ledger.RefusedEntries(1000)
		if out == nil {
			out = []consensus.RefusedRecord{}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/ledger/export", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		if err := a.ledger.Export(w); err != nil {
			a.log.Warn("ledger export", "err", err)
		}
	})
}

func (a *Agent) handleLedgerEntries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := consensus.Filter{Type: q.Get("type"), Peer: q.Get("peer"), Task: q.Get("task"), Consistent: q.Get("consistent") == "1" || q.Get("consistent") == "true"}
	if !knownEntryType(f.Type) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("type=%q is unknown; known: %s", clip(f.Type), strings.Join(entryTypes, ", ")))
		return
	}
	var err error
	if s := q.Get("from"); s != "" {
		if f.From, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("from=%q: want a ledger index", s))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit=%q: want a count", s))
			return
		}
	}
	recs, err := a.ledger.Entries(r.Context(), f)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	if recs == nil {
		recs = []consensus.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (a *Agent) handleLedgerEntry(w http.ResponseWriter, r *http.Request) {
	rec, err := a.ledger.Entry(r.Context(), r.PathValue("key"))
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// entryTypes are the ledger entry types a list can filter on.
var entryTypes = []string{consensus.TypeFramework, consensus.TypeAgreement, consensus.TypeTaskEvent, consensus.TypeSettlement, consensus.TypeMembership}

func knownEntryType(t string) bool { return t == "" || slices.Contains(entryTypes, t) }

// statusFor maps package errors to HTTP statuses.
func statusFor(err error) int {
	switch {
	case errors.Is(err, consensus.ErrNotFound), errors.Is(err, tasks.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrOutcomeUnknown):
		return http.StatusServiceUnavailable
	case errors.Is(err, errForbidden), errors.Is(err, consensus.ErrUnauthorized), errors.Is(err, consensus.ErrNotAdmitted):
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}
