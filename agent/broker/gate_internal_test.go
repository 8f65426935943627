package broker

import (
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
