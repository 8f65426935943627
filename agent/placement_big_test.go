package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/local"
	"github.com/pcm-mesh/pcm/testnet"
	"github.com/pcm-mesh/pcm/testnet/rows"
)

// runLog records what really ran, from driver events: per provider the
// CPUs in use, and per task the attempts running at once.
type runLog struct {
	mu        sync.Mutex
	cpus      map[int]float64
	maxCPUs   map[int]float64
	live      map[string]int // task id -> attempts running now (any provider)
	overlap   []string
	overbook  []string
	capacity  float64
	attempts  map[string]bool // agreement ids that reached running
	runningOn map[string]int
}

func newRunLog(capacity float64) *runLog {
	return &runLog{cpus: map[int]float64{}, maxCPUs: map[int]float64{}, live: map[string]int{}, capacity: capacity, attempts: map[string]bool{}, runningOn: map[string]int{}}
}

func (l *runLog) observe(i int) func(drivers.Event) {
	return func(ev drivers.Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		task, _, _ := strings.Cut(ev.TaskID, "-a")
		switch {
		case ev.State == drivers.StateRunning && !l.attempts[ev.TaskID]:
			l.attempts[ev.TaskID] = true
			l.runningOn[ev.TaskID] = i
			l.cpus[i] += ev.Resources.CPUs
			l.maxCPUs[i] = max(l.maxCPUs[i], l.cpus[i])
			if l.cpus[i] > l.capacity+1e-9 {
				l.overbook = append(l.overbook, fmt.Sprintf("agent %d ran %.2f CPUs of %.2f", i, l.cpus[i], l.capacity))
			}
			l.live[task]++
			if l.live[task] > 1 {
				l.overlap = append(l.overlap, task)
			}
		case ev.State.Final() && l.attempts[ev.TaskID]:
			if j, ok := l.runningOn[ev.TaskID]; ok {
				l.cpus[j] -= ev.Resources.CPUs
				delete(l.runningOn, ev.TaskID)
				l.live[task]--
			}
		}
	}
}

func observedLocal(l *runLog, capacity float64) func(int, string) ([]drivers.Driver, error) {
	return func(i int, dir string) ([]drivers.Driver, error) {
		d, err := local.New(local.Config{StateDir: dir, Capacity: drivers.Resources{CPUs: capacity, MemoryMB: 4096, DiskMB: 10240}}, nil)
		if err != nil {
			return nil, err
		}
		d.Observe(l.observe(i))
		return []drivers.Driver{d}, nil
	}
}

// Must show 1: 200 tasks submitted to random agents of a 5-agent mesh all
// succeed, with exactly one agreement and one settlement each, balances
// summing to zero and no provider over capacity.
func TestTwoHundredTasksOnFiveAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the 200-task mesh test")
	}
	const n, tasks, capacity = 5, 200, 2.0
	rl := newRunLog(capacity)
	m := testnet.Start(t, testnet.Options{N: n, Topology: testnet.Chain, Drivers: observedLocal(rl, capacity),
		Configure: func(_ int, c *agent.Config) { c.Prices = map[string]float64{"cpu": 3.6} }})
	m.WaitForMesh(20 * time.Second)
	type sub struct {
		a  *agent.Agent
		id string
	}
	var subs []sub
	succeeded := 0
	// The reliability suite (testnet/reliability.sh) runs this test in a
	// starved cgroup and collects its figures as a table row.
	t.Cleanup(func() {
		rl.mu.Lock()
		attempts := len(rl.attempts)
		distinct := map[string]bool{}
		for id := range rl.attempts {
			task, _, _ := strings.Cut(id, "-a")
			distinct[task] = true
		}
		rl.mu.Unlock()
		verify := "ok"
		if rep, err := m.Nodes[0].Agent().Ledger().Verify(nil); err != nil || !rep.OK {
			verify = fmt.Sprintf("FAILED: %v %+v", err, rep)
		}
		if err := rows.Append(rows.Row{Scenario: fmt.Sprintf("%d tasks, %d agents", tasks, n), Operations: fmt.Sprint(tasks),
			Acked: int64(len(subs)), Lost: int64(len(subs) - succeeded), Duplicate: int64(attempts - len(distinct)), Verify: verify}); err != nil {
			t.Error(err)
		}
	})
	submitStart := time.Now()
	for i := range tasks {
		a := m.Nodes[rand.IntN(n)].Agent()
		tk, err := a.Submit(shellTask(fmt.Sprintf("t%03d", i), "echo task "+fmt.Sprint(i)), "bulk.yaml")
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub{a, tk.ID})
	}
	t.Logf("submitting %d tasks took %s", tasks, time.Since(submitStart))
	start := time.Now()
	for _, s := range subs {
		tk := waitState(t, m, s.a, s.id, 3*time.Minute, agent.StateSucceeded, agent.StateFailed, agent.StateExpired)
		if tk.State != agent.StateSucceeded {
			t.Fatalf("task %s ended %s: %s", s.id, tk.State, tk.Message)
		}
		succeeded++
	}
	t.Logf("200 tasks done in %s", time.Since(start))
	led := m.Nodes[0].Agent().Ledger()
	m.WaitFor(30*time.Second, "every settlement applied on agent 0", func() bool {
		per, _ := settlementsPerTask(t, m.Nodes[0].Agent())
		return len(per) >= tasks
	})
	perSettled, billed := settlementsPerTask(t, m.Nodes[0].Agent())
	t.Logf("%d of %d attempts billed by the ledger, the others by settlement entries", billed, tasks)
	for _, s := range subs {
		if perSettled[s.id] != 1 {
			t.Errorf("task %s is settled %d times, want once", s.id, perSettled[s.id])
		}
	}
	for _, typ := range []string{consensus.TypeAgreement} {
		recs, err := led.Entries(t.Context(), consensus.Filter{Type: typ, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		for _, r := range recs {
			per[taskOf(t, r)]++
		}
		for _, s := range subs {
			if per[s.id] != 1 {
				t.Errorf("task %s has %d %s entries, want 1", s.id, per[s.id], typ)
			}
		}
	}
	var sum int64
	nonzero := 0
	for _, v := range led.Balances() {
		sum += v
		if v != 0 {
			nonzero++
		}
	}
	if sum != 0 {
		t.Errorf("balances sum to %d, want 0", sum)
	}
	if nonzero == 0 {
		t.Error("no balance moved although the providers charge for cpu")
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.overbook) > 0 {
		t.Errorf("providers ran over capacity: %v", rl.overbook)
	}
	if len(rl.overlap) > 0 {
		t.Errorf("tasks ran twice at once: %v", rl.overlap)
	}
	if len(rl.attempts) != tasks {
		t.Errorf("drivers ran %d attempts, want %d", len(rl.attempts), tasks)
	}
	t.Logf("peak CPUs per agent: %v", rl.maxCPUs)
}

func taskOf(t *testing.T, r consensus.Record) string {
	var p struct {
		TaskID string `json:"task_id"`
	}
	if err := jsonUnmarshal(r.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p.TaskID
}
