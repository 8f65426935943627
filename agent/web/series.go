package web

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Point is one interval of the placement charts.
type Point struct {
	Time time.Time `json:"t"`
	// PerSecond is placements per second over the interval.
	PerSecond float64 `json:"rate"`
	// P50 and P95 are placement latencies (seconds) of the placements in
	// the interval, estimated from the histogram's buckets; 0 when none.
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
}

// series samples the agent's placement histogram and keeps the last span
// of points. It samples only while someone watches (an open event
// stream calls sample), so it needs no goroutine of its own.
type series struct {
	g     prometheus.Gatherer
	every time.Duration
	keep  int

	mu     sync.Mutex
	last   *histogram
	lastAt time.Time
	points []Point
}

type histogram struct {
	count   uint64
	bounds  []float64
	buckets []uint64 // cumulative
}

func newSeries(g prometheus.Gatherer, every, span time.Duration) *series {
	return &series{g: g, every: every, keep: int(span / every)}
}

// sample adds a point when the last one is older than every; it reports
// whether it did.
func (s *series) sample(now time.Time) bool {
	if s.g == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastAt.IsZero() && now.Sub(s.lastAt) < s.every {
		return false
	}
	h := s.read()
	if h == nil {
		return false
	}
	prev, prevAt := s.last, s.lastAt
	s.last, s.lastAt = h, now
	if prev == nil || now.Sub(prevAt) > 3*s.every {
		// The first sample, or the first after nobody watched: no
		// interval to speak of.
		return false
	}
	dt := now.Sub(prevAt).Seconds()
	n := h.count - prev.count
	p := Point{Time: now, PerSecond: float64(n) / dt}
	if n > 0 && len(h.buckets) == len(prev.buckets) {
		delta := make([]uint64, len(h.buckets))
		for i := range delta {
			delta[i] = h.buckets[i] - prev.buckets[i]
		}
		p.P50 = quantile(0.50, h.bounds, delta, n)
		p.P95 = quantile(0.95, h.bounds, delta, n)
	}
	s.points = append(s.points, p)
	if len(s.points) > s.keep {
		s.points = s.points[len(s.points)-s.keep:]
	}
	return true
}

// snapshot copies the points.
func (s *series) snapshot() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Point{}, s.points...)
}

// read gathers pcm_placement_seconds; nil when the registry lacks it.
func (s *series) read() *histogram {
	mfs, err := s.g.Gather()
	if err != nil {
		return nil
	}
	for _, mf := range mfs {
		if mf.GetName() != "pcm_placement_seconds" || len(mf.GetMetric()) == 0 {
			continue
		}
		dh := mf.GetMetric()[0].GetHistogram()
		return fromDTO(dh)
	}
	return nil
}

func fromDTO(dh *dto.Histogram) *histogram {
	h := &histogram{count: dh.GetSampleCount()}
	for _, b := range dh.GetBucket() {
		h.bounds = append(h.bounds, b.GetUpperBound())
		h.buckets = append(h.buckets, b.GetCumulativeCount())
	}
	return h
}

// quantile estimates the q-quantile from cumulative bucket counts over n
// observations, interpolating linearly inside the bucket (as Prometheus'
// histogram_quantile does).
func quantile(q float64, bounds []float64, cum []uint64, n uint64) float64 {
	rank := q * float64(n)
	lower, below := 0.0, uint64(0)
	for i, c := range cum {
		if float64(c) >= rank {
			in := c - below
			if in == 0 {
				return bounds[i]
			}
			return lower + (bounds[i]-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = bounds[i], c
	}
	// Above the last bound: report the last bound, the best we know.
	if len(bounds) > 0 {
		return bounds[len(bounds)-1]
	}
	return 0
}
