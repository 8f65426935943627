package consensus

import "sync"

// subscriber delivers records to one callback on its own goroutine, so a
// slow callback never blocks the FSM; its queue is unbounded.
type subscriber struct {
	fn      func(Record)
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []Record
	stopped bool
	exited  chan struct{}
}

// Subscribe calls fn with every record applied from now on, in order, on a
// goroutine of its own. cancel stops the calls and waits for the goroutine.
func (l *Ledger) Subscribe(fn func(Record)) (cancel func()) {
	s := &subscriber{fn: fn, exited: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	l.subsMu.Lock()
	id := l.nextID
	l.nextID++
	l.subs[id] = s
	l.subsMu.Unlock()
	go s.run()
	return func() {
		l.subsMu.Lock()
		delete(l.subs, id)
		l.subsMu.Unlock()
		s.stop()
	}
}

func (l *Ledger) publish(recs []Record) {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	for _, s := range l.subs {
		s.mu.Lock()
		s.queue = append(s.queue, recs...)
		s.mu.Unlock()
		s.cond.Signal()
	}
}

func (s *subscriber) run() {
	defer close(s.exited)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.stopped {
			s.cond.Wait()
		}
		if s.stopped {
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, r := range batch {
			s.fn(r)
		}
	}
}

func (s *subscriber) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cond.Signal()
	<-s.exited
}
