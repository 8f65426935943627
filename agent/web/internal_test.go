package web

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantile(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1}
	for _, c := range []struct {
		q    float64
		cum  []uint64
		n    uint64
		want float64
	}{
		{0.5, []uint64{10, 10, 10}, 10, 0.005},       // all in the first bucket: halfway
		{0.5, []uint64{0, 10, 10}, 10, 0.055},        // all in the second: interpolated
		{0.95, []uint64{5, 9, 10}, 10, 0.55},         // rank 9.5 of 10, inside the third
		{0.5, []uint64{0, 0, 0}, 4, bounds[2]},       // above the last bound
		{0.99, []uint64{100, 100, 100}, 100, 0.0099}, // near the top of the first
	} {
		if got := quantile(c.q, bounds, c.cum, c.n); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v, %v) = %v, want %v", c.q, c.cum, got, c.want)
		}
	}
}

// The series turns histogram deltas into placements/s and latencies.
func TestSeriesSamples(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pcm_placement_seconds", Buckets: []float64{0.01, 0.1, 1}})
	reg.MustRegister(h)
	s := newSeries(reg, time.Second, time.Minute)
	t0 := time.Now()
	if s.sample(t0) {
		t.Fatal("the first sample has no interval")
	}
	for range 4 {
		h.Observe(0.05)
	}
	if !s.sample(t0.Add(2 * time.Second)) {
		t.Fatal("a sample 2s later was not taken")
	}
	if s.sample(t0.Add(2500 * time.Millisecond)) {
		t.Fatal("a sample 0.5s after the last was taken")
	}
	p := s.snapshot()
	if len(p) != 1 || p[0].PerSecond != 2 || p[0].P50 < 0.01 || p[0].P50 > 0.1 {
		t.Fatalf("points %+v: want one at 2/s with p50 in (0.01, 0.1]", p)
	}
}

// The index folds agreements, events and settlements, reads only past its
// cursor, and lets the broker's own record win.
func TestTaskIndex(t *testing.T) {
	ledger := []string{
		`{"index":1,"type":"membership","payload":{"node":"p1"}}`,
		`{"index":2,"type":"agreement","payload":{"task_id":"t1","broker":"b","provider":"p1","framework":"f","attempt":1,"price":5,"time":"2026-01-01T00:00:00Z"}}`,
		`{"index":3,"type":"task_event","payload":{"task_id":"t1","event":"started","time":"2026-01-01T00:00:01Z"}}`,
		`{"index":4,"type":"agreement","payload":{"task_id":"t2","broker":"me","provider":"p2","attempt":1,"time":"2026-01-01T00:00:02Z"}}`,
		`{"index":5,"type":"task_event","payload":{"task_id":"t1","event":"succeeded","time":"2026-01-01T00:00:03Z"}}`,
		`{"index":6,"type":"settlement","payload":{"task_id":"t1","amount":7,"time":"2026-01-01T00:00:04Z"}}`,
	}
	served := 3
	var reads []string
	get := func(_ context.Context, path string, v any) error {
		reads = append(reads, path)
		if path == "/v1/tasks" {
			return json.Unmarshal([]byte(`[{"id":"t2","name":"mine","state":"running","broker":"me","submitter":"me","submitted_at":"2026-01-01T00:00:01Z"},{"id":"t3","name":"queued one","state":"queued","submitted_at":"2026-01-01T00:00:09Z"}]`), v)
		}
		var from int
		if _, err := fmt.Sscanf(path, "/v1/ledger/entries?from=%d", &from); err != nil {
			return err
		}
		recs := ledger[min(from-1, served):served]
		return json.Unmarshal([]byte("["+strings.Join(recs, ",")+"]"), v)
	}
	x := newTaskIndex(get)
	if _, err := x.list(t.Context()); err != nil {
		t.Fatal(err)
	}
	served = len(ledger)
	list, err := x.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reads[2], "from=4") {
		t.Errorf("second refresh read %q, want from=4", reads[2])
	}
	byID := map[string]TaskSummary{}
	for _, s := range list {
		byID[s.ID] = s
	}
	if len(list) != 3 || list[0].ID != "t3" {
		t.Fatalf("list %+v: want t3 (newest) first of 3", list)
	}
	if t1 := byID["t1"]; t1.State != "succeeded" || t1.Settled != 7 || t1.Provider != "p1" || t1.Local {
		t.Errorf("t1 %+v", t1)
	}
	if t2 := byID["t2"]; t2.State != "running" || t2.Name != "mine" || t2.Provider != "p2" || !t2.Local {
		t.Errorf("t2 %+v", t2)
	}
	if x.head() != 6 {
		t.Errorf("head %d, want 6", x.head())
	}
}

// A watched index re-reads the broker's tasks only after a change.
func TestTaskIndexWatched(t *testing.T) {
	ownReads := 0
	get := func(_ context.Context, path string, v any) error {
		if path == "/v1/tasks" {
			ownReads++
		}
		return json.Unmarshal([]byte(`[]`), v)
	}
	x := newTaskIndex(get)
	x.watched = true
	for range 3 {
		if _, err := x.list(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if ownReads != 1 {
		t.Fatalf("%d reads of /v1/tasks without a change, want 1", ownReads)
	}
	x.changed()
	if _, err := x.list(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ownReads != 2 {
		t.Fatalf("%d reads after a change, want 2", ownReads)
	}
}
