package agent

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/agent/results"
	"github.com/pcm-mesh/pcm/mesh"
)

// DHTStatus is the DHT part of GET /v1/status.
type DHTStatus struct {
	RoutingTable int                `json:"routing_table"`
	Provided     []mesh.ProvidedKey `json:"provided"`
}

// ResultsStatus is the results part of GET /v1/status.
type ResultsStatus struct {
	Held  int                `json:"held"`
	Bytes int64              `json:"bytes"`
	Fetch results.FetchStats `json:"fetch"`
	// Fetching are the fetches from other agents in progress.
	Fetching []results.Transfer `json:"fetching,omitempty"`
}

func (a *Agent) dhtStatus() DHTStatus {
	return DHTStatus{RoutingTable: a.node.RoutingTableSize(), Provided: a.node.ProvidedKeys()}
}

func (a *Agent) resultsStatus() ResultsStatus {
	st := ResultsStatus{Fetch: a.ResultsStats()}
	if a.res != nil {
		st.Fetching = a.res.fetcher.InFlight()
	}
	for _, m := range a.HeldResults() {
		st.Held++
		st.Bytes += m.Size
	}
	return st
}

// FoundProvider is one answer of GET /v1/mesh/find.
type FoundProvider struct {
	Peer  string   `json:"peer"`
	Addrs []string `json:"addrs"`
}

// FindKey looks a DHT key up (a capability key such as pcm:driver:slurm,
// pcm:framework:<id>, pcm:gpu:<model>, or pcm:results:<digest>).
func (a *Agent) FindKey(ctx context.Context, key string, count int) ([]FoundProvider, error) {
	if !strings.HasPrefix(key, "pcm:") {
		return nil, errors.New("key must start with pcm: (pcm:driver:<kind>, pcm:framework:<id>, pcm:gpu:<model>, pcm:results:<digest>)")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ais, err := a.node.FindProviders(ctx, key, count)
	if err != nil {
		return nil, err
	}
	out := []FoundProvider{}
	for _, ai := range ais {
		fp := FoundProvider{Peer: ai.ID.String()}
		for _, ma := range ai.Addrs {
			fp.Addrs = append(fp.Addrs, ma.String())
		}
		out = append(out, fp)
	}
	return out, nil
}

// handleFind answers GET /v1/mesh/find?key=K[&count=N].
func (a *Agent) handleFind(w http.ResponseWriter, r *http.Request) {
	count := 20
	if c := r.URL.Query().Get("count"); c != "" {
		count, _ = strconv.Atoi(c) // checkRequest made sure it is a count
	}
	found, err := a.FindKey(r.Context(), r.URL.Query().Get("key"), max(count, 1))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, found)
}
