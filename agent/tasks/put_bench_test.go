package tasks

import (
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
)

// BenchmarkDurablePut is one submission's synced task-store write, alone
// (serial) and with 16 writers at once (parallel: they share writes and
// syncs).
func BenchmarkDurablePut(b *testing.B) {
	b.Run("serial", func(b *testing.B) { benchPut(b, 1) })
	b.Run("parallel16", func(b *testing.B) { benchPut(b, 16) })
}

func benchPut(b *testing.B, writers int) {
	db, err := consensus.OpenDB(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := OpenStore(db, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(writers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk := &Task{ID: NewID(), Name: "x", Document: []byte(`{"name":"sim-task","resources":{"cpu":1}}`)}
			tk.SetState(StateQueued, "", time.Now())
			if err := s.Put(tk, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}
