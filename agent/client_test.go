package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/testnet"
)

// Agents beyond the ledger's replica caps are clients: they hold no ledger
// copy but still broker and run tasks, reading and proposing through other
// agents (here a client brokers a task that another client runs).
func TestLedgerClientsBrokerAndProvide(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 4, Configure: func(_ int, c *agent.Config) {
		c.Ledger.MaxVoters, c.Ledger.MaxNonVoters = 1, 1
	}})
	m.WaitForMesh(20 * time.Second)
	var clients []*agent.Agent
	for _, n := range m.Nodes {
		if n.Agent().Ledger().Role() == consensus.RoleClient {
			clients = append(clients, n.Agent())
		}
	}
	if len(clients) != 2 {
		t.Fatalf("%d ledger clients, want 2 (1 voter, 1 non-voter, 2 clients)", len(clients))
	}
	broker, provider := clients[0], clients[1]
	doc := fmt.Appendf(nil, "name: client-to-client\nresources: {cpu: 0.5, memory: 64Mi}\ndriver: local\nconstraints: ['provider.id == %q']\ncommand: [\"/bin/sh\", \"-c\", \"echo hi\"]\n", provider.ID())
	tk, err := broker.Submit(doc, "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	end := waitState(t, m, broker, tk.ID, 30*time.Second, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateSucceeded || end.Provider != provider.ID() {
		t.Fatalf("task ended %s on %s: %s", end.State, end.Provider, end.Message)
	}
}
