package agent_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/testnet"
)

// The API answers a wrong method with 405 and Allow, refuses over-long
// ids without echoing them, and refuses unknown or malformed query
// parameters with 400 instead of ignoring them.
func TestAPIRefusesBadRequests(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	base := m.Nodes[0].Agent().APIURL()
	long := strings.Repeat("x", 5000)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string // the Allow header, for 405
		msg          string // in the error
	}{
		{"DELETE", "/v1/status", 405, "GET, HEAD", "DELETE is not allowed"},
		{"GET", "/v1/tasks/abc/cancel", 405, "POST", "use POST"},
		{"PUT", "/v1/tasks", 405, "GET, HEAD, POST", ""},
		{"GET", "/v1/nope", 404, "", "no such endpoint"},
		{"GET", "/v1/tasks/" + long, 400, "", "ids are at most 256"},
		{"GET", "/v1/ledger/entries/" + long, 400, "", "ids are at most 256"},
		{"GET", "/v1/ledger/entries?limit=abc", 400, "", `limit="abc"`},
		{"GET", "/v1/ledger/entries?consistent=yes", 400, "", "want 1, 0, true or false"},
		{"GET", "/v1/ledger/entries?type=agreemnt", 400, "", "known: framework, agreement"},
		{"GET", "/v1/ledger/entries?limt=5", 400, "", `"limt" is unknown`},
		{"GET", "/v1/tasks?limit=abc", 400, "", `"limit" is unknown`},
		{"GET", "/v1/tasks?state=runing", 400, "", `"runing" is not a task state`},
		{"GET", "/v1/status?limit=abc", 400, "", "takes none"},
		{"GET", "/v1/tasks/abc/logs?offset=-1", 400, "", "non-negative"},
		{"GET", "/v1/ledger/entries?limit=5&type=agreement", 200, "", ""},
		{"GET", "/v1/resources?region=eu-west", 200, "", ""},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name := tc.method + " " + tc.path[:min(len(tc.path), 60)]
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", name, resp.StatusCode, tc.status, body[:min(len(body), 200)])
			continue
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s: Allow %q, want %q", name, got, tc.allow)
		}
		if tc.status >= 400 {
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("%s: body %s, want a JSON error containing %q", name, body, tc.msg)
			}
			if len(body) > 500 {
				t.Errorf("%s: the error is %d bytes (the request is echoed back)", name, len(body))
			}
		}
	}
}

// GET /v1/tasks?state= lists only the tasks in those states (the load
// generator polls for unplaced tasks without the whole history).
func TestAPIListsTasksByState(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	a := m.Nodes[0].Agent()
	tk, err := a.Submit(shellTask("listed", "true"), "listed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, a, tk.ID, 2*time.Minute, agent.StateSucceeded)
	list := func(q string) []string {
		resp, err := http.Get(a.APIURL() + "/v1/tasks" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ts []*agent.Task
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&ts) != nil {
			t.Fatalf("GET /v1/tasks%s: status %d", q, resp.StatusCode)
		}
		var ids []string
		for _, t := range ts {
			ids = append(ids, t.ID)
		}
		return ids
	}
	if got := list("?state=succeeded"); len(got) != 1 || got[0] != tk.ID {
		t.Fatalf("?state=succeeded listed %v, want [%s]", got, tk.ID)
	}
	if got := list("?state=queued,negotiating,failed"); len(got) != 0 {
		t.Fatalf("?state=queued,negotiating,failed listed %v, want none", got)
	}
	if got := list(""); len(got) != 1 {
		t.Fatalf("no filter listed %v, want every task", got)
	}
}
