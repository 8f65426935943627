package testnet

import (
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
// size (libp2p's mocknet, sim drivers, all agents in this process) and
// reports placements/s, rounds per task and the process's CPU time per
// task, to show how placement cost grows with the mesh. Sizes come from
// PCM_BENCH_PROVIDERS (default "5,50"; "5,50,500" for the big run). The
// CPU time per task does not depend on how loaded the machine is, the
// placements/s do.
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
	const tasks = 1000
	for _, n := range sizes {
		b.Run(fmt.Sprintf("providers=%d", n), func(b *testing.B) {
			m := StartMocknet(b, MockOptions{N: n, AdvertInterval: time.Second,
				Configure: func(_ int, cfg *agent.Config) {
					if n > 20 {
						cfg.Ledger.RaftMultiplier = 4 // see TestLarge
					}
				}})
			m.WaitForMesh(10 * time.Minute)
			agents := m.Running()
			var rate, rounds, cpu float64
			b.ResetTimer()
			for range b.N {
				cpu0 := cpuTime()
				start := time.Now()
				brokers, ids := submitAll(b, agents, tasks)
				for i, id := range ids {
					waitPlaced(b, brokers[i], id)
				}
				rate += tasks / time.Since(start).Seconds()
				cpu += (cpuTime() - cpu0).Seconds() * 1000 / tasks
				for i, id := range ids {
					if t, err := brokers[i].TaskStatus(b.Context(), id); err == nil && len(t.Rounds) > 0 {
						rounds += float64(t.Rounds[len(t.Rounds)-1].Last())
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(rate/float64(b.N), "placements/s")
			b.ReportMetric(rounds/float64(b.N*tasks), "rounds/task")
			b.ReportMetric(cpu/float64(b.N), "cpu-ms/task")
		})
	}
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
