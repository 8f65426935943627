package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// equalProviders are n providers of the default framework with room for
// any small task; the ids listed in gpu also have one GPU.
func equalProviders(f *Framework, n int, gpu ...int) []*Provider {
	ps := make([]*Provider, n)
	for i := range ps {
		res := map[string]float64{"cpu": 16, "memory": 16 << 30}
		if slices.Contains(gpu, i) {
			res["gpu"] = 1
		}
		ps[i] = &Provider{ID: fmt.Sprintf("p%04d", i), Frameworks: []string{f.ID()}, Total: res, Free: res}
	}
	return ps
}

func sampleFramework(t *testing.T, sample int) *Framework {
	t.Helper()
	f, err := ParseFramework("sample.yaml", fmt.Appendf(nil, "name: sampled\nversion: \"1\"\ntemplates: {cpu: {unit: cores}, memory: {unit: MiB}, gpu: {unit: count}}\nplacement: {sample: %d}\n", sample))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// With more providers than placement.sample, a round ranks that many
// eligible ones, the same for one task every time and different for
// alike tasks; one that few providers can run still finds every one.
func TestPlaceForRanksASampleOfALargeMesh(t *testing.T) {
	f := sampleFramework(t, 16)
	ps := equalProviders(f, 500, 7, 250, 499)
	task, err := ParseTask("t.yaml", []byte("name: member\nframework: sampled\nresources: {cpu: 1, memory: 64Mi}\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sample := func(key string) []string {
		pl := f.PlaceFor(task, key, ps, now)
		if len(pl.Ranked) != 16 || pl.Unevaluated != 500-16 || len(pl.Rejected) != 0 {
			t.Fatalf("ranked %d, unevaluated %d, rejected %d; want 16, %d, 0", len(pl.Ranked), pl.Unevaluated, len(pl.Rejected), 500-16)
		}
		var ids []string
		for _, s := range pl.Ranked {
			ids = append(ids, s.Provider)
		}
		slices.Sort(ids)
		return ids
	}
	a := sample("task-a")
	if again := sample("task-a"); !slices.Equal(a, again) {
		t.Errorf("one task drew two samples: %v, %v", a, again)
	}
	if b := sample("task-b"); slices.Equal(a, b) {
		t.Errorf("two tasks drew the same sample %v", a)
	}

	gpuTask, err := ParseTask("g.yaml", []byte("name: g\nframework: sampled\nresources: {cpu: 1, memory: 64Mi, gpu: 1}\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pl := f.PlaceFor(gpuTask, "task-g", ps, now)
	var got []string
	for _, s := range pl.Ranked {
		got = append(got, s.Provider)
	}
	slices.Sort(got)
	if want := []string{"p0007", "p0250", "p0499"}; !slices.Equal(got, want) || pl.Unevaluated != 0 {
		t.Errorf("a task 3 of 500 can run ranked %v with %d unevaluated; want %v, all evaluated", got, pl.Unevaluated, want)
	}
}

// A mesh no larger than the sample is ranked whole; a framework that
// leaves the sample out keeps its canonical form (its id); an out of
// range sample is refused naming the field.
func TestPlacementSampleDefaultsAndLimits(t *testing.T) {
	f := DefaultFramework()
	ps := equalProviders(f, DefaultSample)
	task, _ := ParseTask("t.yaml", []byte("name: m\nresources: {cpu: 1, memory: 64Mi}\ncommand: [x]\n"))
	if pl := f.PlaceFor(task, "k", ps, now); len(pl.Ranked) != DefaultSample || pl.Unevaluated != 0 {
		t.Errorf("%d providers: ranked %d, unevaluated %d", DefaultSample, len(pl.Ranked), pl.Unevaluated)
	}
	if strings.Contains(string(f.Canonical()), "sample") {
		t.Errorf("a framework without placement.sample has it in its canonical form: %s", f.Canonical())
	}
	for _, bad := range []int{-1, 2_000_000} {
		_, err := ParseFramework("bad.yaml", fmt.Appendf(nil, "name: bad\nversion: \"1\"\ntemplates: {cpu: {unit: cores}}\nplacement: {sample: %d}\n", bad))
		if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), "placement.sample") {
			t.Errorf("sample %d: err = %v, want ErrOutOfRange naming placement.sample", bad, err)
		}
	}
}

// BenchmarkPlaceBySize: one task placed against meshes of 5 to 5,000
// equal providers (default framework, placement.sample 64): the cost of a
// round levels off once the mesh is larger than the sample.
func BenchmarkPlaceBySize(b *testing.B) {
	f := DefaultFramework()
	task, err := ParseTask("t.yaml", []byte("name: m\nresources: {cpu: 1, memory: 64Mi}\ncommand: [x]\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{5, 50, 500, 1000, 5000} {
		b.Run(fmt.Sprintf("providers=%d", n), func(b *testing.B) {
			ps := equalProviders(f, n)
			b.ReportAllocs()
			var pl Placement
			i := 0
			for b.Loop() {
				i++
				pl = f.PlaceFor(task, fmt.Sprint(i), ps, now)
			}
			b.ReportMetric(float64(len(pl.Ranked)+len(pl.Rejected)), "evaluated")
		})
	}
}
