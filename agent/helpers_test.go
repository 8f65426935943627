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
	}
	return kinds
}
