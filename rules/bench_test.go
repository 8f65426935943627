package rules

import (
	"fmt"
	"testing"
)

// BenchmarkEvaluate1000 filters, explains and ranks one task against 1,000
// provider adverts under the ai framework (weighted strategy, provider rule
// and two constraints); a third of the providers fail some rule.
func BenchmarkEvaluate1000(b *testing.B) {
	f := mustFramework(b, "framework-ai.yaml")
	task := mustTask(b, "task-gpu.yaml")
	ps := make([]*Provider, 1000)
	regions := []string{"cn-north", "cn-north", "eu-west"}
	for i := range ps {
		p := aiProvider(f)
		p.ID = fmt.Sprintf("12D3KooW%06d", i)
		p.Attrs = map[string]string{"region": regions[i%3], "zone": fmt.Sprintf("z%d", i%7)}
		p.Free = map[string]float64{"cpu": float64(8 + i%64), "memory": 256 * 1024, "gpu:a100": float64(i % 9)}
		p.Prices["gpu:a100"] = int64(5_000_000 + (i%25)*1_000_000)
		p.LatencyMS = float64(i % 150)
		ps[i] = p
	}
	b.ReportAllocs()
	var pl Placement
	for b.Loop() {
		pl = f.Place(task, ps, now)
	}
	b.ReportMetric(float64(len(pl.Ranked)), "eligible")
}
