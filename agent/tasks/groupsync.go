package tasks

import "sync"

// groupSync shares one fsync among the writers waiting for it (group
// commit): a writer calls do after its write; do returns once a sync that
// began after the call has finished. Under load many task records are
// made durable by one sync instead of one each.
type groupSync struct {
	sync func() error

	mu      sync.Mutex
	waiting []chan error
	running bool
}

func (g *groupSync) do() error {
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

// loop syncs for everyone waiting, again while more arrived meanwhile.
func (g *groupSync) loop() {
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
		err := g.sync()
		for _, ch := range batch {
			ch <- err
		}
	}
}
