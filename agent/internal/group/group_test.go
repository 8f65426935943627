package group

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGroupShares(t *testing.T) {
	var syncs atomic.Int32
	release := make(chan struct{})
	g := Group{Fn: func() error {
		if syncs.Add(1) == 1 {
			<-release // hold the first sync so the others pile up behind it
		}
		return nil
	}}
	first := make(chan error)
	go func() { first <- g.Do() }()
	for syncs.Load() == 0 {
		runtime.Gosched() // until the first sync is running
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := g.Do(); err != nil {
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
	g.Fn = func() error { return boom }
	if err := g.Do(); !errors.Is(err, boom) {
		t.Fatalf("do() = %v, want the sync's error", err)
	}
}
