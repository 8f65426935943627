package sim

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/drivertest"
)

func newTestDriver(t testing.TB, cfg Config) *Driver {
	t.Helper()
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("new sim driver: %v", err)
	}
	return d
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		New: func(t *testing.T, dir string) drivers.Driver {
			return newTestDriver(t, Config{StateDir: dir, Capacity: drivers.Resources{CPUs: 4, MemoryMB: 8192}})
		},
		PrintExit: func(id, out string, code int) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"sim"}, Options: map[string]string{OptOutput: out, OptExitCode: strconv.Itoa(code), OptDuration: "20ms"}}
		},
		Sleep: func(string) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"sim"}, Options: map[string]string{OptDuration: "1h"}}
		},
		Caps: drivertest.Caps{Recover: true, Timeout: true},
	})
}

// TestDeterministic: the same seed gives the same outcomes whatever the
// start order; another seed gives others.
func TestDeterministic(t *testing.T) {
	cfg := Config{
		Capacity:           drivers.Resources{CPUs: 1000, MemoryMB: 1 << 20},
		Duration:           Distribution{Kind: Uniform, Min: drivers.Duration(time.Millisecond), Max: drivers.Duration(50 * time.Millisecond)},
		FailureProbability: 0.3,
		Seed:               42,
		TimeScale:          0.1,
	}
	run := func(cfg Config, reverse bool) map[string]drivers.Status {
		d := newTestDriver(t, cfg)
		defer d.Close()
		const n = 50
		for i := range n {
			if reverse {
				i = n - 1 - i
			}
			if _, err := d.Start(t.Context(), drivers.TaskSpec{ID: fmt.Sprint("t", i), Image: "x", Resources: drivers.Resources{CPUs: 1}}); err != nil {
				t.Fatal(err)
			}
		}
		out := map[string]drivers.Status{}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for i := range n {
			st, err := d.Wait(ctx, fmt.Sprint("t", i))
			if err != nil {
				t.Fatal(err)
			}
			out[st.ID] = st
		}
		return out
	}
	a, b := run(cfg, false), run(cfg, true)
	failed := 0
	for id, st := range a {
		if st.State != b[id].State || st.Usage.WallSeconds != b[id].Usage.WallSeconds {
			t.Errorf("%s: %s/%g vs %s/%g with the same seed", id, st.State, st.Usage.WallSeconds, b[id].State, b[id].Usage.WallSeconds)
		}
		if st.State == drivers.StateFailed {
			failed++
		}
	}
	if failed == 0 || failed == len(a) {
		t.Errorf("%d of %d failed with probability 0.3", failed, len(a))
	}
	cfg.Seed = 43
	c, differ := run(cfg, false), false
	for id, st := range a {
		differ = differ || st.Usage.WallSeconds != c[id].Usage.WallSeconds
	}
	if !differ {
		t.Errorf("seeds 42 and 43 gave identical durations")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"probability above 1", Config{FailureProbability: 1.5}},
		{"negative time scale", Config{TimeScale: -1}},
		{"unknown distribution", Config{Duration: Distribution{Kind: "normal"}}},
		{"min above max", Config{Duration: Distribution{Kind: Uniform, Min: 2, Max: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil); err == nil {
				t.Errorf("New accepted %+v", tc.cfg)
			}
		})
	}
}

func TestBadOption(t *testing.T) {
	d := newTestDriver(t, DefaultConfig())
	defer d.Close()
	for _, opts := range []map[string]string{{OptDuration: "soon"}, {OptExitCode: "-3"}} {
		_, err := d.Start(t.Context(), drivers.TaskSpec{ID: "x", Image: "i", Options: opts})
		if err == nil {
			t.Errorf("options %v accepted", opts)
		}
	}
}

// BenchmarkSimStart measures admissions per second (in memory, tasks of
// one simulated hour so none ends during the run).
func BenchmarkSimStart(b *testing.B) {
	d := newTestDriver(b, Config{Capacity: drivers.Resources{CPUs: 1e9, MemoryMB: 1 << 50}, Duration: Distribution{Kind: Fixed, Fixed: drivers.Duration(time.Hour)}})
	defer d.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.Start(ctx, drivers.TaskSpec{ID: "t" + strconv.Itoa(i), Image: "x", Resources: drivers.Resources{CPUs: 1, MemoryMB: 1}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
}

// BenchmarkSimStartJournal is BenchmarkSimStart with a state dir.
func BenchmarkSimStartJournal(b *testing.B) {
	d := newTestDriver(b, Config{StateDir: b.TempDir(), Capacity: drivers.Resources{CPUs: 1e9, MemoryMB: 1 << 50}, Duration: Distribution{Kind: Fixed, Fixed: drivers.Duration(time.Hour)}})
	defer d.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := d.Start(ctx, drivers.TaskSpec{ID: "t" + strconv.Itoa(i), Image: "x", Resources: drivers.Resources{CPUs: 1, MemoryMB: 1}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
}
