package testnet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
)

// The tests in this file attack a 3-agent mesh from Hostile peers (each a
// real libp2p host with its own key) and check that every attack of
// DESIGN.md's trust model is refused, counted, and changes nothing.

func startTrio(t *testing.T) *Mesh {
	t.Helper()
	m := Start(t, Options{N: 3, Configure: func(i int, c *agent.Config) {
		c.Region = fmt.Sprintf("r%d", i)
	}})
	m.WaitForMesh(30 * time.Second)
	m.WaitFor(30*time.Second, "three ledger voters", func() bool {
		mem, err := m.Nodes[0].Agent().Ledger().Members(context.Background())
		return err == nil && len(mem.Voters) == 3 && mem.Leader != ""
	})
	// A voter that just joined still holds term 0 until the leader's
	// first AppendEntries reaches it: tests that compare terms before and
	// after an attack start once every replica has caught up.
	m.WaitFor(30*time.Second, "every replica on the leader's term and head", func() bool {
		a0 := m.Nodes[0].Agent().Ledger()
		term := a0.Term()
		idx, head := a0.Head()
		for _, a := range m.Running() {
			i, h := a.Ledger().Head()
			if a.Ledger().Term() != term || i != idx || h != head {
				return false
			}
		}
		return term > 0
	})
	return m
}

func leaderOf(t *testing.T, m *Mesh) *agent.Agent {
	t.Helper()
	var l *agent.Agent
	m.WaitFor(20*time.Second, "a ledger leader", func() bool {
		for _, a := range m.Running() {
			if a.Ledger().IsLeader() {
				l = a
				return true
			}
		}
		return false
	})
	return l
}

func shellTask(name, region, cmd string) []byte {
	return fmt.Appendf(nil, "name: %s\nresources:\n  cpu: 0.5\n  memory: 64Mi\ndriver: local\nconstraints: ['provider.attrs.region == %q']\ncommand: [\"/bin/sh\", \"-c\", %q]\n", name, region, cmd)
}

func waitTask(t *testing.T, m *Mesh, a *agent.Agent, id string, d time.Duration, states ...string) *agent.Task {
	t.Helper()
	var last *agent.Task
	m.WaitFor(d, fmt.Sprintf("task %s to reach %v", id, states), func() bool {
		tk, err := a.TaskStatus(context.Background(), id)
		if err == nil {
			last = tk
			return slices.Contains(states, tk.State)
		}
		return false
	})
	return last
}

// Must show 1: a non-member sends AppendEntries, RequestVote and
// InstallSnapshot with a higher term (and committed entries) to every
// replica: each is refused and counted, terms, heads and leadership do not
// move, and writes go on.
func TestHostileRaftRPCsAreRefused(t *testing.T) {
	m := startTrio(t)
	leader := leaderOf(t, m)
	x := NewHostile(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	terms := map[string]uint64{}
	for _, a := range m.Running() {
		if err := x.Connect(ctx, a); err != nil {
			t.Fatal(err)
		}
		terms[a.ID()] = a.Ledger().Term()
	}
	forged, _ := json.Marshal(map[string]any{"entries": []any{}})
	tr := x.Raft()
	for round := range 5 {
		for _, a := range m.Running() {
			id := raft.ServerID(a.ID())
			addr := raft.ServerAddress(a.ID())
			term := terms[a.ID()] + 1000 + uint64(round)
			var ae raft.AppendEntriesResponse
			err := tr.AppendEntries(id, addr, &raft.AppendEntriesRequest{
				RPCHeader: x.RaftHeader(), Term: term, LeaderCommitIndex: 1 << 30,
				Entries: []*raft.Log{{Index: 1 << 29, Term: term, Type: raft.LogCommand, Data: forged}},
			}, &ae)
			if err == nil {
				t.Fatalf("%s answered a stranger's AppendEntries: %+v", a.ID(), ae)
			}
			var rv raft.RequestVoteResponse
			if err := tr.RequestVote(id, addr, &raft.RequestVoteRequest{RPCHeader: x.RaftHeader(), Term: term, LastLogIndex: 1 << 30, LastLogTerm: term}, &rv); err == nil {
				t.Fatalf("%s answered a stranger's RequestVote: %+v", a.ID(), rv)
			}
			var is raft.InstallSnapshotResponse
			snap := strings.NewReader("pcm-ledger-snapshot/1\n")
			if err := tr.InstallSnapshot(id, addr, &raft.InstallSnapshotRequest{RPCHeader: x.RaftHeader(), SnapshotVersion: 1, Term: term, LastLogIndex: 1 << 30, LastLogTerm: term, Size: int64(snap.Len())}, &is, snap); err == nil {
				t.Fatalf("%s answered a stranger's InstallSnapshot: %+v", a.ID(), is)
			}
		}
	}
	for _, a := range m.Running() {
		if got := a.Ledger().Term(); got != terms[a.ID()] {
			t.Errorf("%s: term %d → %d after the attack", a.ID(), terms[a.ID()], got)
		}
		if n := a.Refusals()["ledger_"+consensus.RefusedRaftInbound]; n < 15 {
			t.Errorf("%s counted %d refused raft streams, want at least 15 (refusals %v)", a.ID(), n, a.Refusals())
		}
	}
	if now := leaderOf(t, m); now.ID() != leader.ID() {
		t.Errorf("leadership moved from %s to %s", leader.ID(), now.ID())
	}
	// Writes go on: a task is placed, run and settled.
	tk, err := m.Nodes[0].Agent().Submit(shellTask("after-raft-attack", "r1", "echo ok"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if end := waitTask(t, m, m.Nodes[0].Agent(), tk.ID, 60*time.Second, agent.StateSucceeded, agent.StateFailed); end.State != agent.StateSucceeded {
		t.Fatalf("task after the attack ended %s: %s", end.State, end.Message)
	}
	sameHeads(t, m)
}

func sameHeads(t *testing.T, m *Mesh) {
	t.Helper()
	m.WaitFor(20*time.Second, "every replica on one head", func() bool {
		var first string
		for i, a := range m.Running() {
			idx, h := a.Ledger().Head()
			s := fmt.Sprintf("%d:%s", idx, h)
			if i == 0 {
				first = s
			} else if s != first {
				return false
			}
		}
		return true
	})
}

// Must show 2: joins naming other nodes, a flood of joins and forged
// membership entries change nothing beyond the policy: the voter set stays
// the same, the quorum is never lost, forged entries are refused.
func TestHostileJoinsAndMembershipForgeries(t *testing.T) {
	m := startTrio(t)
	a0 := m.Nodes[0].Agent()
	before, err := a0.Ledger().Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The old wire form: a join that names a node.
	x := NewHostile(t)
	if err := x.Connect(ctx, a0); err != nil {
		t.Fatal(err)
	}
	resp, err := x.Ledger(ctx, a0.ID(), map[string]any{"v": 1, "op": "join", "node": "fake-voter-1"})
	if err != nil || resp["code"] != "invalid" {
		t.Fatalf("join naming a node answered %v, %v; want code invalid", resp, err)
	}
	// A join signed by the hostile key for another (real) peer id.
	victim := m.Nodes[1].Agent().ID()
	now := time.Now().UTC()
	raw, _ := json.Marshal(consensus.JoinRequest{V: 1, Node: victim, Time: now, Expires: now.Add(time.Minute)})
	sig, _ := x.Sign(consensus.DomainJoin, raw)
	resp, err = x.Ledger(ctx, a0.ID(), map[string]any{"v": 1, "op": "join", "join": consensus.SignedJoin{Request: raw, Sig: sig}})
	if err != nil || resp["code"] == nil || resp["role"] == "voter" {
		t.Fatalf("join for another peer answered %v, %v; want a refusal", resp, err)
	}
	// A flood of genuine joins by 20 strangers: all stay clients.
	for range 20 {
		s := NewHostile(t)
		if err := s.Connect(ctx, a0); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		raw, _ := json.Marshal(consensus.JoinRequest{V: 1, Node: s.ID(), Time: now, Expires: now.Add(time.Minute)})
		sig, _ := s.Sign(consensus.DomainJoin, raw)
		resp, err := s.Ledger(ctx, a0.ID(), map[string]any{"v": 1, "op": "join", "join": consensus.SignedJoin{Request: raw, Sig: sig}})
		if err != nil || resp["role"] != string(consensus.RoleClient) {
			t.Fatalf("stranger's join answered %v, %v; want role client", resp, err)
		}
		s.Close()
	}
	// Forged entries: a membership note by the stranger, and a framework
	// whose document is no framework.
	note := consensus.MembershipNote{V: 1, ID: "membership/" + x.ID() + "/1", Node: x.ID(), Change: "added voter", Author: x.ID(), Time: now}
	forgedNote, _ := x.SignedEntry(consensus.TypeMembership, note.ID, note)
	admit := consensus.MembershipNote{V: 1, ID: "membership/" + x.ID() + "/2", Node: x.ID(), Change: consensus.ChangeAdmitVoter, Author: x.ID(), Time: now}
	forgedAdmit, _ := x.SignedEntry(consensus.TypeMembership, admit.ID, admit)
	fw := consensus.FrameworkPublished{V: 1, ID: "fw1-rogue", Author: x.ID(), Document: json.RawMessage(`{"name":"rogue"}`), Time: now}
	rogue, _ := x.SignedEntry(consensus.TypeFramework, fw.ID, fw)
	for _, e := range []consensus.Entry{forgedNote, forgedAdmit, rogue} {
		resp, err := x.Ledger(ctx, a0.ID(), map[string]any{"v": 1, "op": "propose", "entry": e})
		if err != nil || resp["error"] == nil {
			t.Fatalf("forged %s entry answered %v, %v; want an error", e.Type, resp, err)
		}
		if _, err := a0.Ledger().Entry(ctx, e.ID); err == nil {
			t.Fatalf("forged %s entry %s is in the ledger", e.Type, e.ID)
		}
	}
	after, err := a0.Ledger().Members(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(before.Voters)
	slices.Sort(after.Voters)
	if !slices.Equal(before.Voters, after.Voters) || len(after.NonVoters) != len(before.NonVoters) || after.Leader == "" {
		t.Fatalf("membership changed: %+v → %+v", before, after)
	}
	if len(after.Policy.Admitted) != 0 {
		t.Fatalf("admitted by forgery: %v", after.Policy.Admitted)
	}
	// The quorum still works.
	tk, err := a0.Submit(shellTask("after-joins", "r2", "echo ok"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if end := waitTask(t, m, a0, tk.ID, 60*time.Second, agent.StateSucceeded, agent.StateFailed); end.State != agent.StateSucceeded {
		t.Fatalf("task ended %s: %s", end.State, end.Message)
	}
	if r := a0.Refusals(); r["ledger_join"] < 2 || r["ledger_propose"] < 3 {
		t.Fatalf("refusals %v: want ≥2 joins and ≥3 proposals counted", r)
	}
}

// Must show 4: a third peer can neither read the logs of nor cancel
// another's task; the task runs on; its submitter's cancel through the
// broker still works. Must show 6: status and /metrics count the refusals.
func TestHostileTaskOperationsAreRefused(t *testing.T) {
	m := startTrio(t)
	broker, provider := m.Nodes[0].Agent(), m.Nodes[1].Agent()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	submitter, mallory := NewHostile(t), NewHostile(t)
	for _, x := range []*Hostile{submitter, mallory} {
		for _, a := range m.Running() {
			if err := x.Connect(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	resp, err := submitter.Submit(ctx, broker.ID(), shellTask("secret", "r1", "echo secret-output; sleep 120"))
	if err != nil || !resp.OK {
		t.Fatalf("submit: %+v %v", resp, err)
	}
	id := resp.Task.ID
	running := waitTask(t, m, broker, id, 60*time.Second, agent.StateRunning)
	if running.Provider != provider.ID() {
		t.Fatalf("placed on %s, want agent 1", running.Provider)
	}
	m.WaitFor(10*time.Second, "the provider to have output", func() bool {
		_, body, err := submitter.Task(ctx, provider.ID(), agent.TaskRequest{Op: "logs", TaskID: id})
		return err == nil && strings.Contains(string(body), "secret-output")
	})

	for _, tc := range []struct{ op, to string }{{"logs", provider.ID()}, {"cancel", provider.ID()}, {"cancel", broker.ID()}, {"status", broker.ID()}} {
		r, body, err := mallory.Task(ctx, tc.to, agent.TaskRequest{Op: tc.op, TaskID: id})
		if err != nil {
			t.Fatalf("%s at %s: %v", tc.op, tc.to, err)
		}
		if r.OK || !strings.Contains(r.Error, "not entitled") || strings.Contains(string(body), "secret") || r.Task != nil {
			t.Fatalf("%s by a third peer at %s answered %+v %q; want refused", tc.op, tc.to, r, body)
		}
		if !strings.Contains(r.Error, submitter.ID()) {
			t.Errorf("refusal does not name who may: %s", r.Error)
		}
	}
	// A third agent's API is a third peer too.
	third := m.Nodes[2].Agent()
	if err := third.CancelTask(ctx, id, ""); err == nil || !strings.Contains(err.Error(), "not entitled") {
		t.Fatalf("cancel from a third agent: %v; want not entitled", err)
	}
	if rc, err := third.TaskLogs(ctx, id, 0, false); err == nil {
		rc.Close()
		t.Fatal("logs from a third agent: allowed")
	}
	if tk, _ := broker.TaskStatus(ctx, id); tk.State != agent.StateRunning {
		t.Fatalf("after the refusals the task is %s, want running", tk.State)
	}
	st := provider.Status()
	if st.Refused["task_logs"] == 0 || st.Refused["task_cancel"] == 0 {
		t.Fatalf("provider status counts %v", st.Refused)
	}
	res, err := http.Get(provider.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `pcm_refused_total{kind="task_cancel"}`) {
		t.Fatalf("/metrics has no pcm_refused_total for task_cancel")
	}

	// The submitter cancels through the broker.
	r, _, err := submitter.Task(ctx, broker.ID(), agent.TaskRequest{Op: "cancel", TaskID: id})
	if err != nil || !r.OK {
		t.Fatalf("submitter's cancel: %+v %v", r, err)
	}
	end := waitTask(t, m, broker, id, 60*time.Second, agent.StateCancelled, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateCancelled {
		t.Fatalf("task ended %s (%s), want cancelled", end.State, end.Message)
	}
}

// Must show 5: a replica whose records were rewritten while it was stopped
// (and re-chained, so its own verify passes) is reported by a comparison
// with the other replicas, naming the first index that differs.
func TestForkedReplicaIsReported(t *testing.T) {
	m := startTrio(t)
	a0 := m.Nodes[0].Agent()
	for i := range 3 {
		tk, err := a0.Submit(shellTask(fmt.Sprintf("f%d", i), "r1", "true"), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		waitTask(t, m, a0, tk.ID, 60*time.Second, agent.StateSucceeded)
	}
	sameHeads(t, m)
	idx, _ := m.Nodes[2].Agent().Ledger().Head()
	forgeAt := idx - 2
	m.Stop(2)
	x := NewHostile(t)
	fw := consensus.FrameworkPublished{V: 1, ID: "forged", Author: x.ID(), Document: json.RawMessage(`{"name":"forged"}`), Time: time.Now().UTC()}
	e, _ := x.SignedEntry(consensus.TypeFramework, fw.ID, fw)
	if err := consensus.ForgeHistory(m.Nodes[2].Dir+"/ledger", forgeAt, e); err != nil {
		t.Fatal(err)
	}
	m.Restart(2)
	forked := m.Nodes[2].Agent()
	if rep, err := forked.Ledger().Verify(nil); err != nil || !rep.OK {
		t.Fatalf("the forged replica's own verify: %+v %v (the forgery should pass it)", rep, err)
	}
	for _, a := range []*agent.Agent{a0, forked} {
		var rep consensus.ForkReport
		m.WaitFor(30*time.Second, "a fork report", func() bool {
			var err error
			rep, err = a.Ledger().CheckPeers(t.Context())
			return err == nil && !rep.OK()
		})
		var got uint64
		for _, p := range rep.Peers {
			if p.DivergesAt != 0 {
				got = p.DivergesAt
			}
		}
		if got != forgeAt {
			t.Fatalf("%s reports divergence at %d, want %d: %+v", a.ID(), got, forgeAt, rep)
		}
	}
}
