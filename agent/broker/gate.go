package broker

import (
	"sync"

	"github.com/pcm-mesh/pcm/mesh"
)

// maxWakePerAdvert bounds how many parked tasks one advert wakes.
const maxWakePerAdvert = 8

// capacityGate parks the tasks whose last round failed for want of
// capacity until capacity may have freed somewhere: an attempt ended in
// the ledger (its provider freed what it held) or a provider advertised
// free capacity. Each signal wakes only as many parked tasks as it may
// have freed room for, oldest first, so one freed slot does not send every
// waiting task to negotiate at once and decline again (herding). A parked
// task also wakes after its backoff: a missed signal delays, never loses.
type capacityGate struct {
	mu     sync.Mutex
	parked []chan struct{} // oldest first
}

// park queues the caller; wake is closed when a signal picks it. leave
// must be called once the caller stops waiting, woken or not.
func (g *capacityGate) park() (wake <-chan struct{}, leave func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.parked = append(g.parked, ch)
	g.mu.Unlock()
	return ch, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, c := range g.parked {
			if c == ch {
				g.parked = append(g.parked[:i], g.parked[i+1:]...)
				return
			}
		}
	}
}

// release wakes up to n parked tasks, oldest first.
func (g *capacityGate) release(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n = min(n, len(g.parked))
	for _, ch := range g.parked[:n] {
		close(ch)
	}
	g.parked = append(g.parked[:0], g.parked[n:]...)
}

// waiting is the number of parked tasks.
func (g *capacityGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.parked)
}

// onAdvert wakes parked tasks for the free CPUs an advert reports.
func (g *capacityGate) onAdvert(c mesh.Change) {
	if c.Advert == nil {
		return
	}
	n := int(c.Advert.Free["cpu"])
	if n == 0 {
		for _, q := range c.Advert.Free {
			if q > 0 {
				n = 1 // a task may need only what is free
				break
			}
		}
	}
	if n > 0 {
		g.release(min(n, maxWakePerAdvert))
	}
}
