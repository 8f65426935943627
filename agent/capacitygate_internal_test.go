package agent

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pcm-mesh/pcm/mesh"
)

func TestCapacityGateWakesOldestFirstAndNoMore(t *testing.T) {
	var g capacityGate
	var wakes []<-chan struct{}
	var leaves []func()
	for range 5 {
		w, l := g.park()
		wakes, leaves = append(wakes, w), append(leaves, l)
	}
	g.release(2)
	for i, w := range wakes {
		select {
		case <-w:
			if i >= 2 {
				t.Fatalf("task %d woken; release(2) must wake the two oldest only", i)
			}
		default:
			if i < 2 {
				t.Fatalf("task %d not woken by release(2)", i)
			}
		}
	}
	leaves[3]() // gave up waiting (its backoff ran out)
	if n := g.waiting(); n != 2 {
		t.Fatalf("waiting = %d, want 2", n)
	}
	// A full provider's advert wakes nobody; one with 1 CPU free wakes one.
	g.onAdvert(mesh.Change{Advert: &mesh.Advert{Free: map[string]float64{"cpu": 0, "memory": 0}}})
	if n := g.waiting(); n != 2 {
		t.Fatalf("an advert with nothing free woke a task: waiting = %d", n)
	}
	g.onAdvert(mesh.Change{Advert: &mesh.Advert{Free: map[string]float64{"cpu": 1}}})
	select {
	case <-wakes[2]:
	default:
		t.Fatal("the oldest parked task was not woken by an advert with a free CPU")
	}
	select {
	case <-wakes[4]:
		t.Fatal("an advert with one free CPU woke two tasks")
	default:
	}
	for _, l := range leaves {
		l() // leaving twice or after a wake is harmless
	}
	if n := g.waiting(); n != 0 {
		t.Fatalf("waiting = %d after everyone left", n)
	}
}

func TestGroupSyncSharesSyncs(t *testing.T) {
	var syncs atomic.Int32
	release := make(chan struct{})
	g := groupSync{sync: func() error {
		if syncs.Add(1) == 1 {
			<-release // hold the first sync so the others pile up behind it
		}
		return nil
	}}
	first := make(chan error)
	go func() { first <- g.do() }()
	for syncs.Load() == 0 {
		runtime.Gosched() // until the first sync is running
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := g.do(); err != nil {
				t.Error(err)
			}
		})
	}
	for {
		g.mu.Lock()
		n := len(g.waiting)
		g.mu.Unlock()
		if n == 50 {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 2 {
		t.Fatalf("%d syncs for 51 writers, 50 of which waited together; want 2", n)
	}
	boom := errors.New("disk on fire")
	g.sync = func() error { return boom }
	if err := g.do(); !errors.Is(err, boom) {
		t.Fatalf("do() = %v, want the sync's error", err)
	}
}
