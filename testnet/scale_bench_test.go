package testnet

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
)

// BenchmarkPlacementScale places 1,000 tasks at once on meshes of growing
// size (libp2p's mocknet, sim drivers of 16 CPUs, all agents in this
// process) and reports placements/s, submit time, rounds per task and the
// process's CPU time per task, to show how placement cost grows with the
// mesh. Two kinds of task:
//   - fits=all: 0.05 CPU each, so the mesh holds every task at once and
//     the figure is placement itself;
//   - fits=some: 1 CPU each, so most tasks wait for a slot to free (the
//     sim task runs 1 ms), and the figure is how fast capacity comes back.
//
// Sizes come from PCM_BENCH_PROVIDERS (default "5,50"; "5,50,500" for the
// big run). The CPU time per task does not depend on how loaded the
// machine is, the placements/s do; -v logs how the rounds ended.
func BenchmarkPlacementScale(b *testing.B) {
	sizes := []int{5, 50}
	if v := os.Getenv("PCM_BENCH_PROVIDERS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				b.Fatalf("PCM_BENCH_PROVIDERS=%q: want sizes like 5,50,500", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("providers=%d", n), func(b *testing.B) {
			// Every advert reaches every agent, all in this process: n²
			// checks per interval. Beyond 50 agents the interval grows with
			// n (10 s at 500) so the two cores keep up with the gossip.
			m := StartMocknet(b, MockOptions{N: n, AdvertInterval: max(time.Second, time.Duration(n)*20*time.Millisecond),
				Configure: func(_ int, cfg *agent.Config) {
					if n > 20 {
						cfg.Ledger.RaftMultiplier = 4 // see TestLarge
					}
				}})
			m.WaitForMesh(10 * time.Minute)
			for _, kind := range []struct {
				name string
				doc  []byte
			}{{"fits=all", smallSimTask}, {"fits=some", simTask}} {
				b.Run(kind.name, func(b *testing.B) { benchPlaceAll(b, m.Running(), kind.doc) })
			}
		})
	}
}

// smallSimTask is simTask at 0.05 CPU and 16 MiB.
var smallSimTask = bytes.Replace(bytes.Replace(simTask, []byte(`cpu: "1"`), []byte(`cpu: "0.05"`), 1), []byte(`memory: 256Mi`), []byte(`memory: 16Mi`), 1)

// benchPlaceAll submits 1,000 tasks of doc at once and waits until all
// are placed.
func benchPlaceAll(b *testing.B, agents []*agent.Agent, doc []byte) {
	const tasks = 1000
	var rate, rounds, cpu, submit float64
	outcomes, declines := map[string]int{}, map[string]int{}
	b.ResetTimer()
	for range b.N {
		cpu0 := cpuTime()
		start := time.Now()
		brokers, ids := submitAll(b, agents, tasks, doc)
		submit += time.Since(start).Seconds()
		for i, id := range ids {
			waitPlaced(b, brokers[i], id)
		}
		rate += tasks / time.Since(start).Seconds()
		cpu += (cpuTime() - cpu0).Seconds() * 1000 / tasks
		for i, id := range ids {
			t, err := brokers[i].TaskStatus(b.Context(), id)
			if err != nil || len(t.Rounds) == 0 {
				continue
			}
			rounds += float64(t.Rounds[len(t.Rounds)-1].Last())
			for _, r := range t.Rounds {
				o, _, _ := strings.Cut(r.Outcome, " on ")
				o, _, _ = strings.Cut(o, " among ")
				outcomes[o] += r.Last() - r.N + 1
				for _, d := range r.Declines {
					for _, why := range d.Reasons {
						if rule, detail, ok := strings.Cut(why, ": "); ok && rule != "unreachable" {
							why = rule
						} else if ok {
							why = rule + ": " + detail[:min(len(detail), 60)]
						}
						declines[why] += r.Last() - r.N + 1
					}
				}
			}
		}
	}
	b.StopTimer()
	b.Logf("round outcomes: %v; declines by rule: %v", outcomes, declines)
	b.ReportMetric(rate/float64(b.N), "placements/s")
	b.ReportMetric(submit/float64(b.N), "s-to-submit")
	b.ReportMetric(rounds/float64(b.N*tasks), "rounds/task")
	b.ReportMetric(cpu/float64(b.N), "cpu-ms/task")
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
