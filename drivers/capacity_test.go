package drivers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestCapacityReserveRelease(t *testing.T) {
	c := NewCapacity(Resources{CPUs: 1, MemoryMB: 100, GPUs: 1, GPUModel: "A100"})
	tests := []struct {
		id   string
		r    Resources
		want error
	}{
		{"a", Resources{CPUs: 0.5, MemoryMB: 50}, nil},
		{"a", Resources{CPUs: 0.1}, ErrExists},
		{"b", Resources{CPUs: 0.6}, ErrCapacity},
		{"b", Resources{MemoryMB: 51}, ErrCapacity},
		{"b", Resources{GPUs: 1, GPUModel: "H100"}, ErrCapacity},
		{"b", Resources{GPUs: 2}, ErrCapacity},
		{"b", Resources{CPUs: 0.5, MemoryMB: 50, GPUs: 1, GPUModel: "A100"}, nil},
		{"c", Resources{CPUs: 0.000001}, ErrCapacity},
	}
	for i, tc := range tests {
		if err := c.Reserve(tc.id, tc.r); !errors.Is(err, tc.want) {
			t.Errorf("step %d reserve %s %+v: %v, want %v", i, tc.id, tc.r, err, tc.want)
		}
	}
	if f := c.Free(); f.CPUs != 0 || f.MemoryMB != 0 || f.GPUs != 0 {
		t.Errorf("free %+v, want zero", f)
	}
	c.Release("a")
	c.Release("a")
	if f := c.Free(); f.CPUs != 0.5 || f.MemoryMB != 50 {
		t.Errorf("free after release %+v, want 0.5 cpu 50 MB", f)
	}
}

// TestCapacityConcurrentNeverOverAdmits: many goroutines reserving and
// releasing random amounts never push usage past the total, and every
// release restores it exactly (tenths of a CPU add up).
func TestCapacityConcurrentNeverOverAdmits(t *testing.T) {
	total := Resources{CPUs: 4, MemoryMB: 1000}
	c := NewCapacity(total)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 500 {
				id := fmt.Sprintf("%d-%d", g, i)
				want := Resources{CPUs: float64(r.IntN(10)+1) / 10, MemoryMB: int64(r.IntN(200))}
				if err := c.Reserve(id, want); err == nil {
					if f := c.Free(); f.CPUs < 0 || f.MemoryMB < 0 {
						t.Errorf("free went negative: %+v", f)
					}
					c.Release(id)
				} else if !errors.Is(err, ErrCapacity) {
					t.Errorf("reserve: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if f := c.Free(); f != total || c.Len() != 0 {
		t.Errorf("after all releases free %+v (%d held), want %+v", f, c.Len(), total)
	}
}

func FuzzCapacity(f *testing.F) {
	f.Add(0.3, int64(10), 0.7, int64(90))
	f.Fuzz(func(t *testing.T, c1 float64, m1 int64, c2 float64, m2 int64) {
		total := Resources{CPUs: 1, MemoryMB: 100}
		c := NewCapacity(total)
		for i, r := range []Resources{{CPUs: c1, MemoryMB: m1}, {CPUs: c2, MemoryMB: m2}} {
			if ValidateSpec(TaskSpec{ID: "x", Command: []string{"x"}, Resources: r}, []string{KindCommand}) != nil {
				return
			}
			_ = c.Reserve(fmt.Sprint(i), r)
		}
		f := c.Free()
		if f.CPUs < 0 || f.MemoryMB < 0 || f.CPUs > total.CPUs || f.MemoryMB > total.MemoryMB {
			t.Fatalf("free %+v outside [0, %+v]", f, total)
		}
	})
}
