package agent

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
)

// routes builds the HTTP API and mounts the web page at / (webpage.go).
// Every /v1 route answers JSON; errors are {"error": "..."}.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", a.handleStatus)
	mux.HandleFunc("GET /v1/peers", a.handlePeers)
	mux.HandleFunc("GET /v1/resources", a.handleResources)
	mux.HandleFunc("POST /v1/tasks/plan", a.handlePlan)
	mux.HandleFunc("GET /v1/mesh/find", a.handleFind)
	mux.Handle("GET /metrics", a.metrics.handler())
	a.ledgerRoutes(mux)
	a.taskRoutes(mux)
	mux.HandleFunc(catchAll, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint %s %s", r.Method, clip(r.URL.Path)))
	})
	checked := checkRequest(mux)
	root := http.NewServeMux()
	root.Handle("/v1/", a.auth(checked))
	root.Handle("/metrics", a.auth(checked))
	root.Handle("/", a.webPage(mux))
	return root
}

// auth requires "Authorization: Bearer <token>" when a token is set.
//
// Without a token the API is on loopback, where any web site the user
// visits could still send it requests from the browser: requests that a
// browser marks as coming from another site (Origin or Sec-Fetch-Site) are
// refused, so a page cannot submit or cancel tasks through a local agent.
func (a *Agent) auth(next http.Handler) http.Handler {
	next = sameOrigin(next)
	if a.cfg.APIToken == "" {
		return next
	}
	want := []byte("Bearer " + a.cfg.APIToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong API token: send Authorization: Bearer <token> (pcm-agent --api-token)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses cross-site browser requests (CSRF); the CLI and other
// programs send neither header.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
			writeError(w, http.StatusForbidden, errors.New("cross-site browser request refused: use the agent's own page or the CLI"))
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host != r.Host {
				writeError(w, http.StatusForbidden, fmt.Errorf("request from origin %q refused: only the agent's own page (%s) may call the API from a browser", o, r.Host))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// Status is the answer of GET /v1/status.
type Status struct {
	PeerID        string              `json:"peer_id"`
	Addrs         []string            `json:"addrs"`
	Version       string              `json:"version"`
	UptimeSeconds float64             `json:"uptime_s"`
	Peers         int                 `json:"peers"`
	Providers     int                 `json:"providers"`
	Drivers       []string            `json:"drivers"`
	Validator     mesh.ValidatorStats `json:"validator"`
	NAT           mesh.NATStatus      `json:"nat"`
	Ledger        any                 `json:"ledger,omitempty"`
	// DHT is the routing table's size and the keys this agent provides.
	DHT DHTStatus `json:"dht"`
	// Results are the archives this agent keeps and what fetches met.
	Results ResultsStatus `json:"results"`
	// Refused counts what this agent refused from peers, by kind.
	Refused map[string]uint64 `json:"refused"`
	// LedgerFork is the last comparison of this replica's chain with the
	// other replicas' (every 30 s); diverged names any that differ.
	LedgerFork *consensus.ForkReport `json:"ledger_fork,omitempty"`
}

// Status reports the agent's state.
func (a *Agent) Status() Status {
	return Status{
		PeerID:        a.ID(),
		Addrs:         a.node.Addrs(),
		Version:       a.deps.Version,
		UptimeSeconds: time.Since(a.started).Seconds(),
		Peers:         len(a.node.Host().Network().Peers()),
		Providers:     a.node.Table().Len(),
		Drivers:       a.driverNames(),
		Validator:     a.node.ValidatorStats(),
		NAT:           a.node.NAT(),
		Ledger:        a.LedgerHealth(),
		Refused:       a.Refusals(),
		LedgerFork:    a.fork.Load(),
		DHT:           a.dhtStatus(),
		Results:       a.resultsStatus(),
	}
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Status())
}

func (a *Agent) handlePeers(w http.ResponseWriter, _ *http.Request) {
	peers := a.node.Peers()
	if peers == nil {
		peers = []mesh.PeerInfo{}
	}
	writeJSON(w, http.StatusOK, peers)
}

// handleResources lists the resource table; query parameters filter by
// attribute (region=cn-north, driver=slurm).
func (a *Agent) handleResources(w http.ResponseWriter, r *http.Request) {
	filter := map[string]string{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			filter[strings.TrimPrefix(k, "attr.")] = v[0]
		}
	}
	writeJSON(w, http.StatusOK, a.node.Table().List(filter))
}
