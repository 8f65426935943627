package testnet

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
)

// defaultReplicas is the default ledger max_voters + max_non_voters.
var defaultReplicas = agent.DefaultConfig().Ledger.MaxVoters + agent.DefaultConfig().Ledger.MaxNonVoters

// BenchmarkAdvertPropagation measures how long a republished advert takes
// to reach every other agent's resource table (gossipsub over libp2p on
// loopback, signature and replay checks included). One op = one advert
// from one agent seen by all the others; agents take turns.
func BenchmarkAdvertPropagation(b *testing.B) {
	for _, n := range []int{5, 20} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			// A long interval: only the benchmark's kicks publish.
			m := Start(b, Options{N: n, AdvertInterval: 30 * time.Second, Configure: func(_ int, cfg *agent.Config) { cfg.DisableDHT = true }})
			m.WaitFor(2*time.Minute, "every agent to see every advert and the ledger replicas a leader", func() bool { return MeshReady(m.Running(), defaultReplicas) })
			agents := m.Running()
			// seen[k] gets one value per other agent that stores k's new advert.
			var mu sync.Mutex
			want := map[string]uint64{}
			seen := make(chan string, 4*n)
			for _, a := range agents {
				stop := a.Node().Table().Watch(func(c mesh.Change) {
					if c.Advert == nil || c.Provider == a.ID() {
						return
					}
					mu.Lock()
					hit := c.Advert.Seq > want[c.Provider] && want[c.Provider] > 0
					mu.Unlock()
					if hit {
						seen <- c.Provider
					}
				})
				b.Cleanup(stop)
			}
			lat := make([]time.Duration, 0, b.N)
			// An agent publishes at most once per gap: wait it out so the
			// figure is propagation, not the rate limit.
			gap := mesh.RepublishGap(30 * time.Second)
			last := map[int]time.Time{}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := agents[i%n]
				time.Sleep(time.Until(last[i%n].Add(gap + 10*time.Millisecond)))
				e, _ := k.Node().Table().Get(k.ID())
				var cur uint64
				if e.Advert != nil {
					cur = e.Advert.Seq
				}
				mu.Lock()
				want[k.ID()] = max(cur, 1)
				mu.Unlock()
				start := time.Now()
				k.Node().Republish()
				deadline := time.After(30 * time.Second)
				for got := 0; got < n-1; {
					select {
					case p := <-seen:
						if p == k.ID() {
							got++
						}
					case <-deadline:
						b.Fatalf("advert of agent %d reached %d of %d agents in 30s", i%n, got, n-1)
					}
				}
				lat = append(lat, time.Since(start))
				last[i%n] = time.Now()
				mu.Lock()
				want[k.ID()] = 0
				mu.Unlock()
			}
			b.StopTimer()
			reportPercentiles(b, lat, "ms-p50", "ms-p99")
		})
	}
}

// BenchmarkPlacement measures one task's placement latency on 5 agents
// with sim drivers: from Submit at a broker to the agreement committed in
// the ledger (state placed or later). Reports p50/p99 in ms.
func BenchmarkPlacement(b *testing.B) {
	m := Start(b, Options{N: 5, Drivers: SimDrivers})
	m.WaitForMesh(time.Minute)
	agents := m.Running()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a := agents[i%len(agents)]
		start := time.Now()
		task, err := a.Submit(simTask, "bench.yaml")
		if err != nil {
			b.Fatal(err)
		}
		waitPlaced(b, a, task.ID)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat, "ms-p50", "ms-p99")
}

// BenchmarkPlacementThroughput submits b.N tasks at once, spread over 5
// agents with sim drivers, and reports sustained placements per second
// (agreements committed) until the last one is placed.
func BenchmarkPlacementThroughput(b *testing.B) {
	m := Start(b, Options{N: 5, Drivers: SimDrivers})
	m.WaitForMesh(time.Minute)
	agents := m.Running()
	b.ResetTimer()
	start := time.Now()
	brokers, ids := submitAll(b, agents, b.N, simTask)
	for i, id := range ids {
		waitPlaced(b, brokers[i], id)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "placements/s")
	rounds := 0
	for i, id := range ids {
		if t, err := brokers[i].TaskStatus(b.Context(), id); err == nil && len(t.Rounds) > 0 {
			rounds += t.Rounds[len(t.Rounds)-1].N
		}
	}
	b.ReportMetric(float64(rounds)/float64(len(ids)), "rounds/task")
}

// waitPlaced polls a task at its broker until its agreement is committed.
func waitPlaced(b testing.TB, a *agent.Agent, id string) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		t, err := a.TaskStatus(b.Context(), id)
		if err == nil {
			switch t.State {
			case agent.StatePlaced, agent.StateRunning, agent.StateSucceeded:
				return
			case agent.StateFailed, agent.StateExpired, agent.StateCancelled:
				b.Fatalf("task %s ended %s: %s", id, t.State, t.Message)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("task %s not placed within 2m", id)
		}
		<-tick.C
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration, p50, p99 string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), p50)
	b.ReportMetric(at(0.99), p99)
}
