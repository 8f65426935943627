package consensus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit measures committed entries per second on a 3-voter ledger
// over libp2p on loopback, proposing signed agreements on the leader
// (signature checks, batching, hash chain and Badger fsync included).
// Reports entries/s and commit latency p50/p99 (propose call to return).
func BenchmarkCommit(b *testing.B) {
	for _, proposers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			c := newTestCluster(b, 3, false, func(cfg *Config) {
				d := DefaultConfig() // production timings: the shared machine is noisy
				cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
				if v, err := strconv.Atoi(os.Getenv("BENCH_INFLIGHT")); err == nil {
					cfg.MaxInflight = v
				}
			})
			c.start(0, true)
			c.leader(20 * time.Second)
			for i := 1; i < 3; i++ {
				if _, err := c.start(i, false).Join(context.Background(), c.ids(0)); err != nil {
					b.Fatal(err)
				}
			}
			l := c.nodes[c.leader(20*time.Second)].Ledger()
			broker, provider := newSigner(b), newSigner(b)
			// Agreements of distinct tasks: an attempt is settled once, so
			// settlements of one agreement would be refused after the first.
			entries := make([]Entry, b.N)
			for i := range entries {
				entries[i] = agreementEntry(b, broker, provider, fmt.Sprintf("bench-%d-%d", proposers, i), 1)
			}
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range proposers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						t := time.Now()
						for {
							_, err := l.Propose(context.Background(), entries[i])
							if err == nil {
								break
							}
							if !errors.Is(err, ErrOutcomeUnknown) { // retried with the same id, as documented
								b.Error(err)
								return
							}
						}
						lat[i] = time.Since(t)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "entries/s")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
