package testnet

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
)

// TestCutOffLeaderHeals: the ledger leader (the agent that bootstrapped
// it) is cut off from the mesh for longer than voter_timeout, so the
// majority elects another leader and removes it. Nothing its broker
// placed meanwhile commits; after the heal it joins again by itself, is
// back on the one head, and its queued tasks finish.
func TestCutOffLeaderHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("a 35 s partition")
	}
	m := StartMocknet(t, MockOptions{N: 5, AdvertInterval: 200 * time.Millisecond, Configure: func(_ int, c *agent.Config) {
		c.Ledger.VoterTimeout = 3 * time.Second
	}})
	m.WaitForMesh(60 * time.Second)
	var li int
	m.WaitFor(30*time.Second, "three voters and a leader", func() bool {
		for i, n := range m.Nodes {
			l := n.Agent().Ledger()
			if l.IsLeader() {
				mem, err := l.Members(context.Background())
				li = i
				return err == nil && len(mem.Voters) == 3
			}
		}
		return false
	})
	leader := m.Nodes[li].Agent()
	var rest []int
	for i := range m.Nodes {
		if i != li {
			rest = append(rest, i)
		}
	}
	other := m.Nodes[rest[0]].Agent()
	m.Partition(rest, []int{li})
	// The cut-off broker takes tasks; none can be placed while it is alone.
	var ids []string
	for range 5 {
		tk, err := leader.Submit(simTask, "cut.yaml")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	m.WaitFor(60*time.Second, "the majority to elect a leader and remove the cut-off one", func() bool {
		mem, err := other.Ledger().Members(context.Background())
		return err == nil && mem.Leader != "" && mem.Leader != leader.ID() &&
			!slices.Contains(mem.Voters, leader.ID()) && !slices.Contains(mem.NonVoters, leader.ID())
	})
	m.WaitFor(60*time.Second, "the cut-off agent to report a degraded ledger", func() bool {
		return !leader.LedgerHealth().Healthy
	})
	time.Sleep(30 * time.Second) // a long partition: past the rejoin delay
	for _, id := range ids {
		if _, ok := other.Ledger().LatestAgreement(id); ok {
			t.Fatalf("task %s of the cut-off broker got an agreement on the majority side", id)
		}
	}
	m.Heal()
	healed := time.Now()
	m.WaitFor(90*time.Second, "the old leader back on the one head", func() bool {
		if !leader.LedgerHealth().Healthy {
			return false
		}
		i0, h0 := other.Ledger().Head()
		i1, h1 := leader.Ledger().Head()
		return i0 == i1 && h0 == h1
	})
	t.Logf("old leader back on the head %s after the heal (role %s)", time.Since(healed).Round(time.Millisecond), leader.Ledger().Role())
	m.WaitFor(90*time.Second, "the cut-off broker's tasks to succeed", func() bool {
		return countStates(t.Context(), []*agent.Agent{leader, leader, leader, leader, leader}, ids, nil)[agent.StateSucceeded] == len(ids)
	})
	mem, err := other.Ledger().Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r := leader.Ledger().Role(); r != consensus.RoleClient && !slices.Contains(append(mem.Voters, mem.NonVoters...), leader.ID()) {
		t.Fatalf("old leader thinks it is %s but the configuration is %+v", r, mem)
	}
}
