package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/testnet"
)

func shellTask(name, cmd string) []byte {
	return fmt.Appendf(nil, "name: %s\nresources:\n  cpu: 0.5\n  memory: 64Mi\ndriver: local\ncommand: [\"/bin/sh\", \"-c\", %q]\n", name, cmd)
}

func waitState(t *testing.T, m *testnet.Mesh, a *agent.Agent, id string, d time.Duration, states ...string) *agent.Task {
	t.Helper()
	deadline := time.Now().Add(d)
	var last *agent.Task
	for {
		tk, err := a.TaskStatus(t.Context(), id)
		if err == nil {
			last = tk
			for _, s := range states {
				if tk.State == s {
					return tk
				}
			}
		}
		if time.Now().After(deadline) {
			if last != nil {
				t.Fatalf("task %s not in %v after %s: state %s (%s), provider %s, history %+v, rounds %+v", id, states, d, last.State, last.Message, last.Provider, last.History, last.Rounds)
			}
			t.Fatalf("task %s: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSubmitPlacesRunsAndSettles(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3})
	m.WaitForMesh(10 * time.Second)
	a := m.Nodes[0].Agent()
	tk, err := a.Submit(shellTask("hello", "echo hello from pcm"), "hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	done := waitState(t, m, a, tk.ID, 20*time.Second, agent.StateSucceeded, agent.StateFailed)
	if done.State != agent.StateSucceeded {
		t.Fatalf("task ended %s: %s (%+v)", done.State, done.Message, done.History)
	}
	kinds := ledgerKinds(t, a, tk.ID)
	if kinds[consensus.TypeAgreement] != 1 || kinds[settled] != 1 || kinds[consensus.TypeTaskEvent] != 2 {
		t.Fatalf("ledger records for the task: %v", kinds)
	}
}
