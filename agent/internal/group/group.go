package group

import "sync"

// Group shares one run of Fn among the callers waiting for it: Do
// returns once a run that began after the call has finished, with its
// error. Under load many callers are served by one run instead of one
// each (group commit: many task records written and synced at once; many
// capacity refreshes done by one).
type Group struct {
	Fn func() error // set before the first Do

	mu      sync.Mutex
	waiting []chan error
	running bool
}

// Do waits for a run of Fn that begins after this call.
func (g *Group) Do() error {
	ch := make(chan error, 1)
	g.mu.Lock()
	g.waiting = append(g.waiting, ch)
	if !g.running {
		g.running = true
		go g.loop()
	}
	g.mu.Unlock()
	return <-ch
}

// loop runs Fn for everyone waiting, again while more arrived meanwhile.
func (g *Group) loop() {
	for {
		g.mu.Lock()
		batch := g.waiting
		g.waiting = nil
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		err := g.Fn()
		for _, ch := range batch {
			ch <- err
		}
	}
}
