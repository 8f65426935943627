package agent_test

import (
	"encoding/json"
	"testing"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// ledgerKinds counts the ledger records of a task by type.
func ledgerKinds(t *testing.T, a *agent.Agent, taskID string) map[string]int {
	t.Helper()
	recs, err := a.Ledger().Entries(t.Context(), consensus.Filter{Task: taskID})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range recs {
		kinds[r.Type]++
		if r.Type == consensus.TypeSettlement || r.Billed != nil {
			kinds[settled]++
		}
	}
	return kinds
}

// settled counts, in ledgerKinds, an attempt's settlements: a settlement
// entry, or the final event of a billed agreement (the ledger billed it).
const settled = "settled"

// settlementsPerTask counts the settlements of each task in the ledger,
// entries and billed final events alike, and how many were billed.
func settlementsPerTask(t *testing.T, a *agent.Agent) (per map[string]int, billed int) {
	t.Helper()
	per = map[string]int{}
	for _, typ := range []string{consensus.TypeSettlement, consensus.TypeTaskEvent} {
		recs, err := a.Ledger().Entries(t.Context(), consensus.Filter{Type: typ, Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if typ == consensus.TypeTaskEvent && r.Billed == nil {
				continue
			}
			var p struct {
				TaskID string `json:"task_id"`
			}
			if err := json.Unmarshal(r.Payload, &p); err != nil {
				t.Fatal(err)
			}
			per[p.TaskID]++
			if r.Billed != nil {
				billed++
			}
		}
	}
	return per, billed
}
