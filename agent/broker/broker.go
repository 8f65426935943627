package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// Broker tuning.
const (
	defaultDeadline = 24 * time.Hour
	maxLost         = 3 // re-placements after provider loss, on top of retries
	backoffMin      = 100 * time.Millisecond
	backoffMax      = 5 * time.Second
	// maxParallelRounds bounds the rounds a broker runs at once: more would only
	// ask the same providers for the same free capacity and be declined
	// (and run into libp2p's stream limits); the rest wait their turn.
	maxParallelRounds = 32
)

// Broker is the agent's broker side: it negotiates the tasks submitted to
// this agent and follows them to the end.
type Broker struct {
	d    Deps
	self string

	mu     sync.Mutex
	tasks  map[string]*tasks.Task
	parsed map[string]*rules.Task
	kicks  map[string]chan struct{}
	subs   map[int]func(*tasks.Task)
	nextS  int

	view   *view
	leases *brokerLeases
	gate   capacityGate
	rounds chan struct{} // one token per round in progress

	sessions *negotiate.Pool // negotiation sessions, one per provider
	billing  atomic.Bool     // agreements carry billing terms (billingWatch)
}

// New makes a broker; Resume picks up stored tasks, Start its lease watch.
func New(d Deps) *Broker {
	if d.Lease <= 0 {
		d.Lease = negotiate.DefaultLease
	}
	return &Broker{
		d: d, self: d.Identity.ID(),
		tasks: map[string]*tasks.Task{}, parsed: map[string]*rules.Task{}, kicks: map[string]chan struct{}{}, subs: map[int]func(*tasks.Task){},
		view: newView(), leases: newBrokerLeases(), rounds: make(chan struct{}, maxParallelRounds),
		sessions: negotiate.NewPool(d.Mesh.NewStreamOneOf, d.Identity),
	}
}

// Start runs the broker's background work (the lease watch) until its
// context ends.
func (b *Broker) Start() {
	context.AfterFunc(b.d.Ctx, b.sessions.Close)
	b.d.Go(func() { b.leaseWatch(b.d.Ctx) })
	b.d.Go(func() { b.billingWatch(b.d.Ctx) })
}

// billingWatch asks the ledger every 15 s (every 2 s while the answer is
// no) whether agreements may carry billing terms: then the ledger bills
// each attempt as it ends, one entry fewer per task than a settlement.
func (b *Broker) billingWatch(ctx context.Context) {
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok := b.d.Ledger.Billing(qctx)
		cancel()
		if b.billing.Swap(ok) != ok {
			b.d.Log.Info("billing", "ledger_bills_attempts", ok)
		}
		wait := 15 * time.Second
		if !ok {
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// OnAdvert wakes tasks waiting for capacity when an advert shows some.
func (b *Broker) OnAdvert(c mesh.Change) { b.gate.onAdvert(c) }

// SubmitError is a task refused at submission; Fields say why.
type SubmitError struct{ Err error }

func (e *SubmitError) Error() string { return e.Err.Error() }
func (e *SubmitError) Unwrap() error { return e.Err }

// Submit validates a task document and queues it with this agent as broker.
func (b *Broker) Submit(doc []byte, name, submitter string) (*tasks.Task, error) {
	now := time.Now().UTC()
	rt, err := rules.ParseTask(name, doc)
	if err != nil {
		return nil, &SubmitError{err}
	}
	fw, err := b.d.Frameworks.Resolve(rt.Framework)
	if err != nil {
		return nil, &SubmitError{fmt.Errorf("%s: framework: %w", name, err)}
	}
	if err := fw.Admit(rt, rules.Submitter{ID: submitter}, now); err != nil {
		return nil, &SubmitError{err}
	}
	t := &tasks.Task{
		ID: tasks.NewID(), Name: rt.Name, Framework: fw.ID(), Document: rt.Canonical(), Hash: rt.Hash(),
		Broker: b.self, Submitter: submitter, SubmittedAt: now, Deadline: rt.DeadlineAt(now),
		RetriesLeft: rt.Retries, Attempt: 1,
	}
	if t.Deadline.IsZero() {
		t.Deadline = now.Add(defaultDeadline)
	}
	t.SetState(tasks.StateQueued, "", now)
	if err := b.d.Store.Put(t, true); err != nil {
		return nil, err
	}
	c := t.Clone() // t is the broker's from track on: read it no more
	b.track(t, rt)
	return c, nil
}

// track starts following a task (new, or found in the store at start).
func (b *Broker) track(t *tasks.Task, rt *rules.Task) {
	kick := make(chan struct{}, 1)
	b.mu.Lock()
	b.tasks[t.ID] = t
	b.parsed[t.ID] = rt
	b.kicks[t.ID] = kick
	c := t.Clone()
	b.mu.Unlock()
	b.notify(c)
	b.d.Go(func() { b.drive(t.ID, kick) })
}

// get returns a copy of a task this agent brokers.
func (b *Broker) Get(id string) (*tasks.Task, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.tasks[id]
	if !ok {
		return nil, false
	}
	return t.Clone(), true
}

func (b *Broker) List() []*tasks.Task {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*tasks.Task, 0, len(b.tasks))
	for _, t := range b.tasks {
		out = append(out, t.Clone())
	}
	slices.SortFunc(out, func(x, y *tasks.Task) int { return x.SubmittedAt.Compare(y.SubmittedAt) })
	return out
}

// update changes a task under the lock, persists it (synced when the
// change is durable: placed, ended, lost, expired, cancelled) and wakes
// watchers.
func (b *Broker) update(id string, fn func(t *tasks.Task) bool) {
	b.mu.Lock()
	t, ok := b.tasks[id]
	if !ok {
		b.mu.Unlock()
		return
	}
	prevState := t.State
	if !fn(t) {
		b.mu.Unlock()
		return
	}
	c := t.Clone()
	kick := b.kicks[id]
	b.mu.Unlock()
	if c.State != prevState {
		b.d.Metrics.Transition(c)
	}
	// Sync what a restarted broker must not get wrong: placements, ends,
	// new attempts. Negotiation rounds (negotiating ⇄ queued) and
	// running are redone or re-read from the ledger after a restart.
	durable := c.State != prevState && c.State != tasks.StateNegotiating && c.State != tasks.StateRunning &&
		!(c.State == tasks.StateQueued && prevState == tasks.StateNegotiating)
	if err := b.d.Store.Put(c, durable); err != nil {
		b.d.Log.Error("persist task", "task", id, "err", err)
	}
	b.notify(c)
	select {
	case kick <- struct{}{}:
	default:
	}
}

// watch calls fn with a copy of every task change until stop is called.
func (b *Broker) Watch(fn func(*tasks.Task)) (stop func()) {
	b.mu.Lock()
	id := b.nextS
	b.nextS++
	b.subs[id] = fn
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}
}

func (b *Broker) notify(t *tasks.Task) {
	b.mu.Lock()
	fns := make([]func(*tasks.Task), 0, len(b.subs))
	for _, f := range b.subs {
		fns = append(fns, f)
	}
	b.mu.Unlock()
	for _, f := range fns {
		f(t.Clone())
	}
}
