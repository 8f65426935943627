package testnet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
)

// simTask is a task for sim providers: 1 CPU, 1 simulated second.
var simTask = []byte(`name: sim-task
resources:
  cpu: "1"
  memory: 256Mi
driver: sim
command: [simulated]
deadline: 30m
retries: 2
`)

// submitAll submits n tasks of doc round-robin over the running agents, as
// users of every agent would: several submitters per agent, all at once.
// It returns (broker, task id) pairs.
func submitAll(t testing.TB, agents []*agent.Agent, n int, doc []byte) ([]*agent.Agent, []string) {
	t.Helper()
	brokers := make([]*agent.Agent, n)
	ids := make([]string, n)
	// Several users per agent: task i goes to agent i mod len(agents),
	// submitted by its user i mod (len(agents) * usersPerAgent).
	const usersPerAgent = 8
	users := len(agents) * usersPerAgent
	errs := make([]error, users)
	var wg sync.WaitGroup
	for k := range users {
		a := agents[k%len(agents)]
		wg.Go(func() {
			for i := k; i < n; i += users {
				task, err := a.Submit(doc, fmt.Sprintf("sim-%d.yaml", i))
				if err != nil {
					errs[k] = fmt.Errorf("submit %d to %s: %w", i, a.ID(), err)
					return
				}
				brokers[i], ids[i] = a, task.ID
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return brokers, ids
}

// countStates asks every task's broker for its state. Tasks in done
// (when not nil) succeeded before and are not asked again.
func countStates(ctx context.Context, brokers []*agent.Agent, ids []string, done map[string]bool) map[string]int {
	out := map[string]int{}
	for i, id := range ids {
		if done[id] {
			out[agent.StateSucceeded]++
			continue
		}
		st, err := brokers[i].TaskStatus(ctx, id)
		if err != nil {
			out["error"]++
			continue
		}
		out[st.State]++
		if done != nil && st.State == agent.StateSucceeded {
			done[id] = true
		}
	}
	return out
}

// logStuck logs where one negotiating and one placed task stand, by
// agent index, to tell why a large run does not finish.
func logStuck(t *testing.T, m *Mocknet, brokers []*agent.Agent, ids []string) {
	index := map[string]int{}
	for i, n := range m.Nodes {
		index[n.Identity.ID()] = i
	}
	seen := map[string]bool{}
	for i, id := range ids {
		st, err := brokers[i].TaskStatus(t.Context(), id)
		if err != nil || seen[st.State] || (st.State != agent.StateNegotiating && st.State != agent.StatePlaced) {
			continue
		}
		seen[st.State] = true
		last := ""
		if len(st.Rounds) > 0 {
			r := st.Rounds[len(st.Rounds)-1]
			last = fmt.Sprintf("round %d: %s, candidates %d, bids %d, declines %v", r.N, r.Outcome, len(r.Candidates), len(r.Bids), r.Declines)
		}
		t.Logf("stuck %s: broker agent%d provider agent%d role %s; %s; history %v", st.State, index[brokers[i].ID()], index[st.Provider], brokers[i].Ledger().Role(), last, st.History)
	}
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// TestLarge runs 100 agents with sim drivers on libp2p's mocknet in one
// process and places 1,000 tasks, submitted to all agents at once. It
// takes minutes on a 2-core machine, so it only runs with PCM_LARGE=1
// (PCM_LARGE_AGENTS and PCM_LARGE_TASKS change the sizes; PCM_PPROF=ADDR
// serves live profiles; PCM_LARGE_HEAP=FILE writes the heap and the
// goroutines once the tasks are done).
func TestLarge(t *testing.T) {
	if os.Getenv("PCM_LARGE") != "1" || testing.Short() {
		t.Skip("set PCM_LARGE=1 to run the 100-agent, 1,000-task mesh (minutes)")
	}
	nAgents, nTasks := envInt("PCM_LARGE_AGENTS", 100), envInt("PCM_LARGE_TASKS", 1000)
	if addr := os.Getenv("PCM_PPROF"); addr != "" {
		// Live profiles of a long run: go tool pprof http://ADDR/debug/pprof/profile
		go func() { t.Log(http.ListenAndServe(addr, nil)) }()
	}
	start := time.Now()
	// The default ledger membership: 3 voters, 6 non-voters, the other
	// agents ledger clients. Adverts every 10 s (the default): each one
	// reaches all agents, and here all agents share two cores.
	// Raft timeouts ×4 (ledger.raft_multiplier): a hundred agents on two
	// cores starve the leader's heartbeats past 1.5 s, and every needless
	// election fails the proposals in flight.
	opts := MockOptions{N: nAgents, AdvertInterval: 10 * time.Second,
		Configure: func(_ int, cfg *agent.Config) { cfg.Ledger.RaftMultiplier = 4 }}
	m := StartMocknet(t, opts)
	started := time.Since(start)
	m.WaitForMesh(10 * time.Minute)
	converged := time.Since(start)
	t.Logf("%d agents started in %s, mesh converged after %s, RSS peak %.0f MiB", nAgents, started.Round(time.Millisecond), converged.Round(time.Millisecond), rssMiB())

	placeStart := time.Now()
	brokers, ids := submitAll(t, m.Running(), nTasks, simTask)
	nextLog := time.Now()
	done := map[string]bool{}
	m.WaitFor(20*time.Minute, fmt.Sprintf("%d tasks to succeed", nTasks), func() bool {
		c := countStates(t.Context(), brokers, ids, done)
		if time.Now().After(nextLog) {
			head, _ := m.Nodes[0].Agent().Ledger().Head()
			t.Logf("after %s: %v; ledger head %d, leader %.16s", time.Since(placeStart).Round(time.Second), c, head, m.Nodes[0].Agent().Ledger().Leader())
			nextLog = time.Now().Add(15 * time.Second)
			logStuck(t, m, brokers, ids)
		}
		return c[agent.StateSucceeded] == nTasks
	})
	elapsed := time.Since(placeStart)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d tasks succeeded in %s (%.1f tasks/s); heap in use %.0f MiB, Go sys %.0f MiB, RSS peak %.0f MiB, goroutines %d",
		nTasks, elapsed.Round(time.Millisecond), float64(nTasks)/elapsed.Seconds(), float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20), rssMiB(), runtime.NumGoroutine())
	if path := os.Getenv("PCM_LARGE_HEAP"); path != "" {
		writeHeapProfile(t, path)
	}
	checkLedgers(t, m.Running(), nTasks)
}

// writeHeapProfile writes the live heap (after a GC) to path, for
// go tool pprof -sample_index=inuse_space, and the goroutines, counted by
// stack, to path.goroutines.
func writeHeapProfile(t *testing.T, path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Errorf("heap profile: %v", err)
	}
	g, err := os.Create(path + ".goroutines")
	if err != nil {
		t.Errorf("goroutine profile: %v", err)
		return
	}
	defer g.Close()
	if err := pprof.Lookup("goroutine").WriteTo(g, 1); err != nil {
		t.Errorf("goroutine profile: %v", err)
	}
}

// checkLedgers waits until the ledger replicas among agents (clients
// keep no copy) verify and share one head holding at least minEntries
// entries.
func checkLedgers(t *testing.T, agents []*agent.Agent, minEntries int) {
	t.Helper()
	var replicas []*agent.Agent
	for _, a := range agents {
		if a.Ledger().Role() != consensus.RoleClient {
			replicas = append(replicas, a)
		}
	}
	if len(replicas) == 0 {
		t.Fatal("no ledger replica among the agents")
	}
	WaitFor(t, time.Minute, fmt.Sprintf("the %d replicas to verify and agree on one head", len(replicas)), func() bool {
		heads := map[string]bool{}
		for _, a := range replicas {
			rep, err := a.Ledger().Verify(nil)
			if err != nil || !rep.OK || rep.Entries < uint64(minEntries) {
				return false
			}
			heads[rep.Head] = true
		}
		return len(heads) == 1
	})
	t.Logf("%d ledger replicas verify and agree on one head", len(replicas))
}

func envInt(name string, def int) int {
	var n int
	if _, err := fmt.Sscanf(os.Getenv(name), "%d", &n); err != nil || n <= 0 {
		return def
	}
	return n
}

// TestMocknetKillRestartPartition exercises the mocknet helpers on a small
// mesh: tasks are placed, a partitioned agent drops out of the others'
// tables and comes back after Heal, a killed agent restarts with its
// identity and ledger.
func TestMocknetKillRestartPartition(t *testing.T) {
	m := StartMocknet(t, MockOptions{N: 5, AdvertInterval: 200 * time.Millisecond})
	m.WaitForMesh(30 * time.Second)

	brokers, ids := submitAll(t, m.Running(), 10, simTask)
	m.WaitFor(60*time.Second, "10 tasks to succeed", func() bool {
		return countStates(t.Context(), brokers, ids, nil)[agent.StateSucceeded] == 10
	})

	// Cut agent 4 off: the others' adverts from it expire after 3 intervals.
	m.Partition([]int{0, 1, 2, 3}, []int{4})
	cutID := m.Nodes[4].Identity.ID()
	m.WaitFor(10*time.Second, "agent 4 to expire from the others' tables", func() bool {
		for _, n := range m.Nodes[:4] {
			if _, ok := n.Agent().Node().Table().Get(cutID); ok {
				return false
			}
		}
		return true
	})
	m.Heal()
	m.WaitForMesh(30 * time.Second)

	// Kill a ledger voter (agent 1 joined second, so it votes) and bring it back.
	m.Kill(1)
	brokers, ids = submitAll(t, m.Running(), 5, simTask)
	m.WaitFor(60*time.Second, "5 tasks to succeed with agent 1 down", func() bool {
		return countStates(t.Context(), brokers, ids, nil)[agent.StateSucceeded] == 5
	})
	m.Restart(1)
	m.WaitForMesh(30 * time.Second)
	if got, want := m.Nodes[1].Agent().ID(), m.Nodes[1].Identity.ID(); got != want {
		t.Fatalf("restarted agent has id %s, want %s", got, want)
	}
	checkLedgers(t, m.Running(), 15)
}
