package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/local"
	"github.com/pcm-mesh/pcm/testnet"
)

func regionTask(name, region, cmd string) []byte {
	return fmt.Appendf(nil, "name: %s\nresources:\n  cpu: 0.5\n  memory: 64Mi\ndriver: local\nconstraints: ['provider.attrs.region == %q']\ncommand: [\"/bin/sh\", \"-c\", %q]\n", name, region, cmd)
}

// Must show 2: a provider stopped while running tasks: each task is
// recorded lost and completes on another provider, never twice at once.
func TestLostProviderTasksCompleteElsewhere(t *testing.T) {
	const capacity = 2.0
	rl := newRunLog(capacity)
	m := testnet.Start(t, testnet.Options{N: 4, Drivers: observedLocal(rl, capacity), Configure: func(i int, c *agent.Config) {
		if i >= 2 {
			c.Region = "edge"
		}
	}})
	m.WaitForMesh(20 * time.Second)
	broker := m.Nodes[0].Agent()
	victim := m.Nodes[3].Agent().ID()
	// Six half-CPU tasks need both 2-CPU edge providers.
	var ids []string
	for i := range 6 {
		tk, err := broker.Submit(regionTask(fmt.Sprintf("edge%d", i), "edge", "sleep 6; echo done"), "edge.yaml")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	var onVictim []string
	m.WaitFor(30*time.Second, "a task running on agent 3", func() bool {
		onVictim = nil
		for _, id := range ids {
			tk, _ := broker.TaskStatus(t.Context(), id)
			if tk.State == agent.StateRunning && tk.Provider == victim {
				onVictim = append(onVictim, id)
			}
		}
		return len(onVictim) > 0
	})
	// The machine goes down: the agent stops and so do its processes.
	m.Stop(3)
	killTasks(t, rl, 3, m.Nodes[3].Dir)
	for _, id := range ids {
		tk := waitState(t, m, broker, id, 60*time.Second, agent.StateSucceeded, agent.StateFailed)
		if tk.State != agent.StateSucceeded {
			t.Fatalf("task %s ended %s: %s", id, tk.State, tk.Message)
		}
	}
	for _, id := range onVictim {
		recs, err := broker.Ledger().Entries(t.Context(), consensus.Filter{Task: id})
		if err != nil {
			t.Fatal(err)
		}
		var lost, agreements int
		var last consensus.Agreement
		for _, r := range recs {
			switch r.Type {
			case consensus.TypeAgreement:
				agreements++
				_ = json.Unmarshal(r.Payload, &last)
			case consensus.TypeTaskEvent:
				var ev consensus.TaskEvent
				_ = json.Unmarshal(r.Payload, &ev)
				if ev.Event == consensus.EventLost {
					lost++
				}
			}
		}
		if lost != 1 || agreements != 2 || last.Provider == victim || last.Attempt != 2 {
			t.Errorf("task %s: %d lost events, %d agreements, last on %s attempt %d", id, lost, agreements, last.Provider, last.Attempt)
		}
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.overlap) > 0 {
		t.Errorf("tasks ran twice at once: %v", rl.overlap)
	}
}

// killTasks stops every task the stopped agent i left running, as a
// machine failure would, and records their end in the run log.
func killTasks(t *testing.T, rl *runLog, i int, dir string) {
	t.Helper()
	d, err := local.New(local.Config{StateDir: dir + "/drivers", Capacity: drivers.Resources{CPUs: rl.capacity, MemoryMB: 4096}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Observe(rl.observe(i))
	sts, err := d.Recover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if !st.State.Final() {
			if err := d.Stop(t.Context(), st.ID, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Wait(t.Context(), st.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Must show 3: a task nobody can take stays queued, then expires at its
// deadline, and explain names the rule or capacity that ruled out each
// provider.
func TestUnplaceableTaskExpiresWithExplanation(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3})
	m.WaitForMesh(20 * time.Second)
	a := m.Nodes[1].Agent()
	cases := []struct {
		doc, want string
	}{
		{"name: huge\nresources: {cpu: 10000, memory: 1Gi}\ncommand: [\"true\"]\ndeadline: 3s\n", "capacity: cpu"},
		{"name: mars\nresources: {cpu: 1, memory: 1Gi}\ncommand: [\"true\"]\ndeadline: 3s\nconstraints: ['provider.attrs.region == \"mars\"']\n", `provider.attrs.region == "mars"`},
	}
	for _, tc := range cases {
		tk, err := a.Submit([]byte(tc.doc), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		m.WaitFor(2*time.Second, tk.Name+" to be queued after a round", func() bool {
			mid, err := a.TaskStatus(t.Context(), tk.ID)
			return err == nil && mid.State == agent.StateQueued && len(mid.Rounds) > 0
		})
		end := waitState(t, m, a, tk.ID, 10*time.Second, agent.StateExpired, agent.StateSucceeded)
		if end.State != agent.StateExpired {
			t.Fatalf("%s ended %s", tk.Name, end.State)
		}
		if late := end.History[len(end.History)-1].Time.Sub(end.Deadline); late < 0 || late > 2*time.Second {
			t.Errorf("%s expired %s after its deadline", tk.Name, late)
		}
		last := end.Rounds[len(end.Rounds)-1]
		ruled := map[string]string{}
		for _, r := range last.Ruled {
			ruled[r.Provider] = strings.Join(r.Reasons, "; ")
		}
		for _, n := range m.Nodes {
			why, ok := ruled[n.Agent().ID()]
			if !ok || !strings.Contains(why, tc.want) {
				t.Errorf("%s: provider %d ruled out with %q, want it to name %q", tk.Name, n.Index, why, tc.want)
			}
		}
	}
}

// Must show 4: cancel from an agent that is neither broker nor provider
// ends the task cancelled on the provider.
func TestCancelOnlyByParties(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Configure: func(i int, c *agent.Config) {
		if i == 1 {
			c.Region = "here"
		}
	}})
	m.WaitForMesh(20 * time.Second)
	broker, third := m.Nodes[0].Agent(), m.Nodes[2].Agent()
	tk, err := broker.Submit(regionTask("long", "here", "sleep 60"), "long.yaml")
	if err != nil {
		t.Fatal(err)
	}
	running := waitState(t, m, broker, tk.ID, 20*time.Second, agent.StateRunning)
	if running.Provider != m.Nodes[1].Agent().ID() {
		t.Fatalf("placed on %s, want agent 1", running.Provider)
	}
	m.WaitFor(10*time.Second, "agent 2 to see the agreement", func() bool {
		_, ok := third.Ledger().LatestAgreement(tk.ID)
		return ok
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// A third agent is no party to the task: refused.
	if err := third.CancelTask(ctx, tk.ID, third.ID()); err == nil || !strings.Contains(err.Error(), "not entitled") {
		t.Fatalf("cancel from a third agent: %v; want not entitled", err)
	}
	// The broker (the submitter's agent) cancels it at the provider.
	if err := broker.CancelTask(ctx, tk.ID, broker.ID()); err != nil {
		t.Fatal(err)
	}
	end := waitState(t, m, broker, tk.ID, 20*time.Second, agent.StateCancelled, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateCancelled || !strings.Contains(end.Message, broker.ID()) {
		t.Fatalf("task ended %s (%s), want cancelled by %s", end.State, end.Message, broker.ID())
	}
	rec, err := broker.Ledger().Entry(t.Context(), running.AgreementID+"/"+consensus.EventCancelled)
	if err != nil {
		t.Fatalf("no cancelled event in the ledger: %v", err)
	}
	var ev consensus.TaskEvent
	_ = json.Unmarshal(rec.Payload, &ev)
	if ev.Author != running.Provider {
		t.Errorf("cancelled event by %s, want the provider %s", ev.Author, running.Provider)
	}
}

// Broker state survives a restart: a task in flight when its broker
// restarts is picked up again and settled.
func TestBrokerRestartPicksUpTasks(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Configure: func(i int, c *agent.Config) {
		if i == 2 {
			c.Region = "far"
		}
	}})
	m.WaitForMesh(20 * time.Second)
	tk, err := m.Nodes[1].Agent().Submit(regionTask("survivor", "far", "sleep 2; echo ok"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, m.Nodes[1].Agent(), tk.ID, 20*time.Second, agent.StateRunning)
	m.Restart(1)
	broker := m.Nodes[1].Agent()
	end := waitState(t, m, broker, tk.ID, 30*time.Second, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateSucceeded {
		t.Fatalf("task ended %s: %s", end.State, end.Message)
	}
	if kinds := ledgerKinds(t, broker, tk.ID); kinds[settled] != 1 {
		t.Fatalf("the task is settled %d times after the broker restarted, want once: %v", kinds[settled], kinds)
	}
}
