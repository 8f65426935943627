package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
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

// broker is the agent's broker side: it negotiates the tasks submitted to
// this agent and follows them to the end.
type broker struct {
	a *Agent

	mu     sync.Mutex
	tasks  map[string]*Task
	parsed map[string]*rules.Task
	kicks  map[string]chan struct{}
	subs   map[int]func(*Task)
	nextS  int

	view   *view
	leases *brokerLeases
	gate   capacityGate
	rounds chan struct{} // one token per round in progress
}

func newBroker(a *Agent) *broker {
	return &broker{a: a, tasks: map[string]*Task{}, parsed: map[string]*rules.Task{}, kicks: map[string]chan struct{}{}, subs: map[int]func(*Task){}, view: newView(), leases: newBrokerLeases(), rounds: make(chan struct{}, maxParallelRounds)}
}

func newTaskID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// SubmitError is a task refused at submission; Fields say why.
type SubmitError struct{ Err error }

func (e *SubmitError) Error() string { return e.Err.Error() }
func (e *SubmitError) Unwrap() error { return e.Err }

// Submit validates a task document and queues it with this agent as broker.
func (b *broker) Submit(doc []byte, name, submitter string) (*Task, error) {
	now := time.Now().UTC()
	rt, err := rules.ParseTask(name, doc)
	if err != nil {
		return nil, &SubmitError{err}
	}
	fw, err := b.a.fws.resolve(rt.Framework)
	if err != nil {
		return nil, &SubmitError{fmt.Errorf("%s: framework: %w", name, err)}
	}
	if err := fw.Admit(rt, rules.Submitter{ID: submitter}, now); err != nil {
		return nil, &SubmitError{err}
	}
	t := &Task{
		ID: newTaskID(), Name: rt.Name, Framework: fw.ID(), Document: rt.Canonical(), Hash: rt.Hash(),
		Broker: b.a.ID(), Submitter: submitter, SubmittedAt: now, Deadline: rt.DeadlineAt(now),
		RetriesLeft: rt.Retries, Attempt: 1,
	}
	if t.Deadline.IsZero() {
		t.Deadline = now.Add(defaultDeadline)
	}
	t.setState(StateQueued, "", now)
	if err := b.a.tasks.put(t, true); err != nil {
		return nil, err
	}
	c := t.clone() // t is the broker's from track on: read it no more
	b.track(t, rt)
	return c, nil
}

// track starts following a task (new, or found in the store at start).
func (b *broker) track(t *Task, rt *rules.Task) {
	kick := make(chan struct{}, 1)
	b.mu.Lock()
	b.tasks[t.ID] = t
	b.parsed[t.ID] = rt
	b.kicks[t.ID] = kick
	c := t.clone()
	b.mu.Unlock()
	b.notify(c)
	b.a.goLoop(func() { b.drive(t.ID, kick) })
}

func (t *Task) clone() *Task {
	c := *t
	c.Rounds = slices.Clone(t.Rounds)
	c.History = slices.Clone(t.History)
	c.Excluded = slices.Clone(t.Excluded)
	return &c
}

// get returns a copy of a task this agent brokers.
func (b *broker) get(id string) (*Task, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.tasks[id]
	if !ok {
		return nil, false
	}
	return t.clone(), true
}

func (b *broker) list() []*Task {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Task, 0, len(b.tasks))
	for _, t := range b.tasks {
		out = append(out, t.clone())
	}
	slices.SortFunc(out, func(x, y *Task) int { return x.SubmittedAt.Compare(y.SubmittedAt) })
	return out
}

// update changes a task under the lock, persists it (synced when the
// change is durable: placed, ended, lost, expired, cancelled) and wakes
// watchers.
func (b *broker) update(id string, fn func(t *Task) bool) {
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
	c := t.clone()
	kick := b.kicks[id]
	b.mu.Unlock()
	if c.State != prevState {
		b.a.metrics.transition(c)
	}
	// Sync what a restarted broker must not get wrong: placements, ends,
	// new attempts. Negotiation rounds (negotiating ⇄ queued) and
	// running are redone or re-read from the ledger after a restart.
	durable := c.State != prevState && c.State != StateNegotiating && c.State != StateRunning &&
		!(c.State == StateQueued && prevState == StateNegotiating)
	if err := b.a.tasks.put(c, durable); err != nil {
		b.a.log.Error("persist task", "task", id, "err", err)
	}
	b.notify(c)
	select {
	case kick <- struct{}{}:
	default:
	}
}

// watch calls fn with a copy of every task change until stop is called.
func (b *broker) watch(fn func(*Task)) (stop func()) {
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

func (b *broker) notify(t *Task) {
	b.mu.Lock()
	fns := make([]func(*Task), 0, len(b.subs))
	for _, f := range b.subs {
		fns = append(fns, f)
	}
	b.mu.Unlock()
	for _, f := range fns {
		f(t.clone())
	}
}

// drive negotiates a task until placed, re-negotiates after losses and
// retries, and expires it at its deadline.
func (b *broker) drive(id string, kick chan struct{}) {
	backoff := backoffMin
	for {
		t, ok := b.get(id)
		if !ok || finalState(t.State) {
			return
		}
		var wait time.Duration
		switch t.State {
		case StateQueued, StateNegotiating:
			if time.Now().After(t.Deadline) {
				b.update(id, func(t *Task) bool {
					t.setState(StateExpired, "deadline passed before any provider took it; see `pcm-agent tasks explain "+t.ID+"`", time.Now().UTC())
					return true
				})
				return
			}
			select {
			case b.rounds <- struct{}{}:
			case <-b.a.runCtx.Done():
				return
			}
			out := b.round(t)
			<-b.rounds
			if out == roundPlaced {
				backoff = backoffMin
				continue
			}
			// The round's own updates kicked us; only a later kick (a
			// re-queue, a cancel) should cut the backoff short.
			select {
			case <-kick:
			default:
			}
			wait = min(backoff, time.Until(t.Deadline)+time.Millisecond)
			backoff = min(2*backoff, backoffMax)
			if out == roundStarved {
				wake, leave := b.gate.park()
				select {
				case <-b.a.runCtx.Done():
				case <-kick:
				case <-wake:
				case <-time.After(wait):
				}
				leave()
				continue
			}
		default:
			wait = time.Minute
		}
		select {
		case <-b.a.runCtx.Done():
			return
		case <-kick:
		case <-time.After(wait):
		}
	}
}

// candidates converts the resource table into rules providers for fw.
// pool is the providers a round considers, as this broker sees them.
type pool struct {
	list []*rules.Provider
	byID map[string]*rules.Provider
	seq  map[string]uint64 // advert seq each provider was built from
}

// candidates are the known providers but the excluded, from their
// adverts amended by what this broker learned since (see view); this
// agent itself from its own live state.
func (b *broker) candidates(fw *rules.Framework, exclude []string) pool {
	pl := pool{byID: map[string]*rules.Provider{}, seq: map[string]uint64{}}
	for _, e := range b.a.node.Table().List(nil) {
		ad := e.Advert
		if slices.Contains(exclude, ad.Provider) {
			continue
		}
		p := providerFromAdvert(ad, fw)
		if ad.Provider == b.a.ID() {
			p = b.a.provider.selfView(fw)
		} else {
			b.view.amend(p, ad.Seq)
		}
		pl.list = append(pl.list, p)
		pl.byID[p.ID] = p
		pl.seq[p.ID] = ad.Seq
	}
	return pl
}

func providerFromAdvert(ad *mesh.Advert, fw *rules.Framework) *rules.Provider {
	var names []string
	for _, d := range ad.Drivers {
		names = append(names, d.Name)
	}
	fws := slices.Clone(ad.Frameworks)
	return &rules.Provider{ID: ad.Provider, Drivers: names, Attrs: ad.Attrs, Frameworks: fws, Total: ad.Total, Free: ad.Free, Prices: ad.Prices[fw.ID()], Running: ad.Running}
}

// roundOutcome is how a round ended.
type roundOutcome int

const (
	roundFailed  roundOutcome = iota // not placed: retry after a backoff
	roundPlaced                      // an agreement committed
	roundStarved                     // not placed for want of capacity: wait for some to free
)

// round runs one negotiation round.
func (b *broker) round(t *Task) roundOutcome {
	fw, err := b.a.fws.resolve(t.Framework)
	if err != nil {
		b.update(t.ID, func(t *Task) bool { t.setState(StateQueued, err.Error(), time.Now().UTC()); return true })
		return roundFailed
	}
	b.mu.Lock()
	rt := b.parsed[t.ID]
	b.mu.Unlock()
	now := time.Now().UTC()
	ps := b.candidates(fw, t.Excluded)
	pl := fw.Place(rt, ps.list, now)
	if len(pl.Ranked) == 0 && len(t.Excluded) > 0 {
		// Exclusion is a preference: when no other provider can take the
		// task, an earlier one (back again) may.
		ps = b.candidates(fw, nil)
		pl = fw.Place(rt, ps.list, now)
		t.Excluded = nil
	}
	rd := Round{Attempt: t.Attempt, Time: now}
	starved := false // some provider would fit but for its free capacity
	for _, ev := range pl.Rejected {
		ro := RuledOut{Provider: ev.Provider}
		only := len(ev.Failures) > 0
		for _, f := range ev.Failures {
			ro.Reasons = append(ro.Reasons, f.String())
			only = only && f.Rule == "capacity"
		}
		starved = starved || only
		rd.Ruled = append(rd.Ruled, ro)
	}
	for _, ex := range t.Excluded {
		rd.Ruled = append(rd.Ruled, RuledOut{Provider: ex, Reasons: []string{"excluded: an earlier attempt on it was lost or failed"}})
	}
	k := fw.Placement.Candidates
	if k <= 0 {
		k = 3
	}
	ranked := pl.Ranked
	if len(ranked) > k {
		ranked = ranked[:k]
	}
	for _, s := range ranked {
		rd.Candidates = append(rd.Candidates, s.Provider)
	}
	if len(ranked) == 0 {
		rd.Outcome = fmt.Sprintf("no eligible provider among %d known", len(ps.list)+len(t.Excluded))
		b.finishRound(t.ID, rd, StateQueued)
		if starved {
			return roundStarved
		}
		return roundFailed
	}
	b.update(t.ID, func(t *Task) bool { t.setState(StateNegotiating, "", now); return true })
	if b.negotiate(t, fw, rt, ranked, ps, &rd) {
		return roundPlaced
	}
	b.finishRound(t.ID, rd, StateQueued)
	for _, d := range rd.Declines {
		if capacityDecline(d.Reasons) {
			return roundStarved
		}
	}
	return roundFailed
}

func (b *broker) finishRound(id string, rd Round, state string) {
	b.a.metrics.rounds.WithLabelValues("unplaced").Inc()
	b.update(id, func(t *Task) bool {
		t.addRound(rd)
		if t.State == StateQueued || t.State == StateNegotiating {
			t.setState(state, rd.Outcome, time.Now().UTC())
		}
		return true
	})
}

// offer is one candidate's open negotiation stream.
type offer struct {
	provider string
	s        conn
	r        *bufio.Reader
	bid      *BidMsg
	reasons  []string
	err      error
}

// negotiate sends CFPs in parallel, awards the best bid and commits the
// agreement; rd records what happened.
func (b *broker) negotiate(t *Task, fw *rules.Framework, rt *rules.Task, ranked []rules.Scored, ps pool, rd *Round) bool {
	timeout := time.Duration(fw.Placement.BidTimeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(b.a.runCtx, timeout)
	defer cancel()
	cfp := CFP{V: protocolVersion, ID: newTaskID(), TaskID: t.ID, Attempt: t.Attempt, Framework: fw.ID(), Task: t.Document, TaskHash: t.Hash, Broker: b.a.ID(), Expires: time.Now().Add(timeout)}
	env, err := seal(b.a.deps.Identity, KindCFP, cfp)
	if err != nil {
		rd.Outcome = err.Error()
		return false
	}
	offers := make([]*offer, len(ranked))
	var wg sync.WaitGroup
	for i, s := range ranked {
		offers[i] = &offer{provider: s.Provider}
		wg.Add(1)
		go func(o *offer) {
			defer wg.Done()
			b.call(ctx, o, env, cfp)
		}(offers[i])
	}
	wg.Wait()
	defer func() {
		for _, o := range offers {
			if o.s != nil {
				_ = o.s.Close()
			}
		}
	}()
	var bids []rules.Bid
	for _, o := range offers {
		switch {
		case o.bid != nil:
			bids = append(bids, rules.Bid{Provider: o.provider, Price: o.bid.Price})
			rd.Bids = append(rd.Bids, BidRecord{Provider: o.provider, Price: o.bid.Price})
		case o.err != nil:
			rd.Declines = append(rd.Declines, RuledOut{Provider: o.provider, Reasons: []string{"unreachable: " + o.err.Error()}})
		default:
			rd.Declines = append(rd.Declines, RuledOut{Provider: o.provider, Reasons: o.reasons})
			b.view.declined(o.provider, ps.seq[o.provider], o.reasons)
		}
	}
	if len(bids) == 0 {
		rd.Outcome = fmt.Sprintf("no bids from %d candidates", len(offers))
		return false
	}
	order := fw.RankBids(rt, bids, ps.byID)
	// Losing bidders hold capacity for us until released: release them as
	// soon as a winner confirms, not after the ledger commit.
	released := map[string]bool{}
	release := func(winner string) {
		for _, o := range offers {
			if o.provider == winner || o.s == nil || o.bid == nil || released[o.provider] {
				continue
			}
			released[o.provider] = true
			if rel, err := seal(b.a.deps.Identity, KindRelease, ReleaseMsg{V: protocolVersion, CFP: cfp.ID}); err == nil {
				_ = writeEnv(o.s, rel)
			}
		}
	}
	for _, s := range order {
		o := findOffer(offers, s.Provider)
		if released[o.provider] {
			break // a confirmed winner's agreement failed to commit
		}
		if b.award(t, fw, rt, cfp, o, rd, func() { release(o.provider) }) {
			b.view.awarded(o.provider, ps.seq[o.provider], rt.Resources)
			return true
		}
	}
	release("")
	if rd.Outcome == "" {
		rd.Outcome = "no bidder confirmed"
	}
	return false
}

func findOffer(offers []*offer, provider string) *offer {
	for _, o := range offers {
		if o.provider == provider {
			return o
		}
	}
	return &offer{provider: provider}
}

// call sends the CFP to one candidate and reads its bid or decline.
func (b *broker) call(ctx context.Context, o *offer, env Envelope, cfp CFP) {
	var s conn
	if o.provider == b.a.ID() {
		// Negotiating with ourselves: same protocol over an in-memory pipe.
		mine, theirs := net.Pipe()
		go func() { _ = b.a.provider.serve(theirs, b.a.ID()) }()
		s = mine
	} else {
		ns, err := b.a.node.NewStream(ctx, o.provider, NegotiateProtocol)
		if err != nil {
			o.err = err
			return
		}
		s = ns
	}
	o.s, o.r = s, bufio.NewReaderSize(s, 4096)
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := writeEnv(s, env); err != nil {
		o.err = err
		return
	}
	deadline := cfp.Expires
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	resp, err := readEnvBy(s, o.r, deadline)
	if err != nil {
		o.err = err
		return
	}
	switch resp.Kind {
	case KindBid:
		var bid BidMsg
		if err := open(resp, KindBid, o.provider, &bid); err != nil {
			o.err = err
			return
		}
		if bid.CFP != cfp.ID || bid.Provider != o.provider || bid.TaskID != cfp.TaskID {
			o.err = fmt.Errorf("%w: bid does not answer cfp %s", errBadMessage, cfp.ID)
			return
		}
		o.bid = &bid
	case KindDecline:
		var d DeclineMsg
		if err := open(resp, KindDecline, o.provider, &d); err != nil {
			o.err = err
			return
		}
		o.reasons = d.Reasons
	default:
		o.err = fmt.Errorf("%w: unexpected %q", errBadMessage, resp.Kind)
	}
}

// award sends the agreement to the winner, collects its signature and
// commits the agreement to the ledger.
// confirmed runs once the provider has signed, before the commit.
func (b *broker) award(t *Task, fw *rules.Framework, rt *rules.Task, cfp CFP, o *offer, rd *Round, confirmed func()) bool {
	if o.s == nil || o.bid == nil {
		return false
	}
	ag := consensus.Agreement{
		V: consensus.PayloadVersion, ID: fmt.Sprintf("%s-a%d", t.ID, t.Attempt), TaskID: t.ID, TaskHash: t.Hash,
		Framework: fw.ID(), Broker: b.a.ID(), Provider: o.provider, Submitter: t.Submitter, Attempt: t.Attempt, Price: o.bid.Price,
		LeaseSeconds: int(b.a.lease() / time.Second),
		Resources:    rt.Resources, Driver: o.bid.Driver, Time: time.Now().UTC(),
	}
	entry, err := consensus.NewEntry(consensus.TypeAgreement, ag.ID, ag, b.a.deps.Identity)
	if err != nil {
		rd.Outcome = err.Error()
		return false
	}
	_ = o.s.SetDeadline(time.Now().Add(30 * time.Second))
	aw, err := seal(b.a.deps.Identity, KindAward, AwardMsg{V: protocolVersion, CFP: cfp.ID, Agreement: entry.Payload, BrokerSig: entry.Signatures[0].Sig})
	if err != nil || writeEnv(o.s, aw) != nil {
		rd.Outcome = "award not delivered to " + o.provider
		return false
	}
	resp, err := readEnvBy(o.s, o.r, time.Now().Add(30*time.Second))
	var conf ConfirmMsg
	if err == nil {
		err = open(resp, KindConfirm, o.provider, &conf)
	}
	if err == nil && o.provider != b.a.ID() { // placed on itself: one party, one signature
		entry.Signatures = append(entry.Signatures, consensus.Signature{Signer: o.provider, Sig: conf.ProviderSig})
		slices.SortFunc(entry.Signatures, func(x, y consensus.Signature) int { return cmpString(x.Signer, y.Signer) })
		if verr := entry.Validate(mesh.Verifier{}); verr != nil {
			err = verr
		}
	}
	if err != nil {
		rd.Outcome = fmt.Sprintf("winner %s did not confirm: %v", o.provider, err)
		return false
	}
	confirmed()
	ctx, cancel := context.WithTimeout(b.a.runCtx, 30*time.Second)
	defer cancel()
	rc, err := b.a.proposeRetry(ctx, entry)
	if err != nil {
		if ab, serr := seal(b.a.deps.Identity, KindAborted, AbortedMsg{V: protocolVersion, CFP: cfp.ID, Reason: err.Error()}); serr == nil {
			_ = writeEnv(o.s, ab)
		}
		rd.Outcome = "agreement not committed: " + err.Error()
		return b.adoptCommitted(t.ID)
	}
	if cm, err := seal(b.a.deps.Identity, KindCommitted, CommittedMsg{V: protocolVersion, CFP: cfp.ID, Index: rc.Index}); err == nil {
		_ = writeEnv(o.s, cm)
	}
	rd.Winner, rd.Outcome = o.provider, "placed on "+o.provider
	b.a.metrics.rounds.WithLabelValues("placed").Inc()
	b.update(t.ID, func(t *Task) bool {
		t.addRound(*rd)
		t.Provider, t.AgreementID, t.Price = ag.Provider, ag.ID, ag.Price
		if t.State == StateQueued || t.State == StateNegotiating {
			t.setState(StatePlaced, "agreement "+ag.ID+" committed", time.Now().UTC())
		}
		return true
	})
	return true
}

// adopt takes up an agreement of this broker's as soon as the ledger
// applies it: usually just before the round that proposed it records it
// itself, and also after that round gave up on it (the proposal's outcome
// was unknown, e.g. the leader changed). The ledger is the truth, the task
// is placed there; the note does not guess which case it was. An
// agreement id is unique per task attempt, so no other agreement for the
// attempt can commit, and the provider runs what the ledger says.
func (b *broker) adopt(r consensus.Record) {
	var ag consensus.Agreement
	if json.Unmarshal(r.Payload, &ag) != nil || ag.Broker != b.a.ID() {
		return
	}
	b.update(ag.TaskID, func(t *Task) bool {
		if t.AgreementID != "" || t.Attempt != ag.Attempt || (t.State != StateQueued && t.State != StateNegotiating) {
			return false
		}
		t.Provider, t.AgreementID, t.Price = ag.Provider, ag.ID, ag.Price
		t.setState(StatePlaced, fmt.Sprintf("agreement %s committed at index %d", ag.ID, r.Index), time.Now().UTC())
		return true
	})
}

// adoptCommitted looks for a committed agreement of the task's current
// attempt after a proposal failed with an unknown outcome or a taken id;
// true when there was one and the task is placed on it.
func (b *broker) adoptCommitted(taskID string) bool {
	ctx, cancel := context.WithTimeout(b.a.runCtx, 10*time.Second)
	defer cancel()
	recs, err := b.a.ledger.Entries(ctx, consensus.Filter{Type: consensus.TypeAgreement, Task: taskID})
	if err != nil {
		return false
	}
	for _, r := range recs {
		b.adopt(r)
	}
	t, ok := b.get(taskID)
	return ok && t.AgreementID != ""
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// onRecord follows ledger events of tasks this agent brokers; the end of
// any attempt, this broker's or not, wakes a task waiting for capacity.
func (b *broker) onRecord(r consensus.Record) {
	if r.Type == consensus.TypeAgreement {
		b.adopt(r)
		return
	}
	if r.Type != consensus.TypeTaskEvent {
		return
	}
	var ev consensus.TaskEvent
	if json.Unmarshal(r.Payload, &ev) != nil {
		return
	}
	if ev.Event != consensus.EventStarted {
		b.view.freed(ev.Author)
		b.gate.release(1)
	}
	b.mu.Lock()
	t, ok := b.tasks[ev.TaskID]
	current := ok && t.AgreementID == ev.AgreementID
	b.mu.Unlock()
	if !current {
		return
	}
	switch ev.Event {
	case consensus.EventStarted:
		b.update(ev.TaskID, func(t *Task) bool {
			if t.State != StatePlaced {
				return false
			}
			t.setState(StateRunning, "started on "+ev.Author, time.Now().UTC())
			return true
		})
	case consensus.EventSucceeded, consensus.EventFailed, consensus.EventCancelled:
		b.a.goLoop(func() { b.ended(ev) })
	}
}

// ended settles an attempt and either finishes the task or re-places it.
func (b *broker) ended(ev consensus.TaskEvent) {
	t, ok := b.get(ev.TaskID)
	if !ok || t.AgreementID != ev.AgreementID || finalState(t.State) {
		return
	}
	amount := b.settle(t, ev)
	b.update(ev.TaskID, func(t *Task) bool {
		if t.AgreementID != ev.AgreementID || finalState(t.State) {
			return false
		}
		t.ExitCode, t.Usage, t.Settled, t.Results = ev.ExitCode, ev.Usage, t.Settled+amount, ev.Results
		now := time.Now().UTC()
		switch {
		case ev.Event == consensus.EventSucceeded:
			t.setState(StateSucceeded, "", now)
		case ev.Event == consensus.EventCancelled:
			t.setState(StateCancelled, ev.Message, now)
		case t.RetriesLeft > 0:
			t.RetriesLeft--
			t.Attempt++
			t.Excluded = append(t.Excluded, t.Provider)
			t.Provider, t.AgreementID = "", ""
			t.setState(StateQueued, fmt.Sprintf("attempt failed (exit %d: %s); retrying elsewhere", ev.ExitCode, ev.Message), now)
		default:
			t.setState(StateFailed, fmt.Sprintf("exit %d: %s", ev.ExitCode, ev.Message), now)
		}
		return true
	})
}

// settle records the bill for an ended attempt: the broker pays the
// provider the agreed hourly price for the measured usage.
func (b *broker) settle(t *Task, ev consensus.TaskEvent) int64 {
	fw, err := b.a.fws.resolve(t.Framework)
	if err != nil {
		return 0
	}
	b.mu.Lock()
	rt := b.parsed[t.ID]
	b.mu.Unlock()
	amount := fw.Bill(rt, t.Price, rules.Usage{CPUSeconds: ev.Usage.CPUSeconds, WallSeconds: ev.Usage.WallSeconds})
	st := consensus.Settlement{V: consensus.PayloadVersion, ID: ev.AgreementID + "/settle", TaskID: t.ID, AgreementID: ev.AgreementID, Payer: b.a.ID(), Payee: t.Provider, Amount: amount, Time: time.Now().UTC()}
	e, err := consensus.NewEntry(consensus.TypeSettlement, st.ID, st, b.a.deps.Identity)
	if err != nil {
		b.a.log.Error("settlement", "task", t.ID, "err", err)
		return 0
	}
	ctx, cancel := context.WithTimeout(b.a.runCtx, 5*time.Minute)
	defer cancel()
	if _, err := b.a.proposeRetry(ctx, e); err != nil {
		b.a.log.Error("record settlement", "task", t.ID, "err", err)
		return 0
	}
	b.a.metrics.settlement.Add(float64(amount))
	return amount
}

func (b *broker) lost(t *Task) {
	te := consensus.TaskEvent{V: consensus.PayloadVersion, ID: t.AgreementID + "/lost", TaskID: t.ID, AgreementID: t.AgreementID, Event: consensus.EventLost, Author: b.a.ID(), Message: "provider " + t.Provider + " did not renew its lease", Time: time.Now().UTC()}
	e, err := consensus.NewEntry(consensus.TypeTaskEvent, te.ID, te, b.a.deps.Identity)
	if err == nil {
		ctx, cancel := context.WithTimeout(b.a.runCtx, 5*time.Minute)
		_, err = b.a.proposeRetry(ctx, e)
		cancel()
	}
	if err != nil {
		// The first final event of an attempt wins: if the provider's
		// outcome (or an earlier "lost" of ours) got there first, follow
		// the ledger.
		switch end := b.a.ledger.AttemptEnd(t.AgreementID); end {
		case consensus.EventLost:
		case "":
			b.a.log.Error("record lost attempt", "task", t.ID, "err", err)
			b.leases.mu.Lock()
			delete(b.leases.declared, t.AgreementID) // try again at the next lease check
			b.leases.mu.Unlock()
			return
		default:
			b.a.log.Info("attempt ended before it was declared lost", "task", t.ID, "end", end)
			return
		}
	}
	b.update(t.ID, func(cur *Task) bool {
		if cur.AgreementID != t.AgreementID || finalState(cur.State) {
			return false
		}
		now := time.Now().UTC()
		cur.LostCount++
		cur.Excluded = append(cur.Excluded, cur.Provider)
		cur.History = append(cur.History, Transition{State: StateLost, Time: now, Note: te.Message})
		if cur.LostCount > maxLost+cur.RetriesLeft {
			cur.setState(StateFailed, "lost on too many providers", now)
			return true
		}
		cur.Attempt++
		cur.Provider, cur.AgreementID = "", ""
		cur.setState(StateQueued, "provider lost; re-placing", now)
		return true
	})
}

// cancelLocal cancels a task that is not placed yet.
func (b *broker) cancelLocal(id, by string) (bool, error) {
	placed := false
	found := false
	b.update(id, func(t *Task) bool {
		found = true
		if finalState(t.State) {
			return false
		}
		if t.State == StatePlaced || t.State == StateRunning {
			placed = true
			return false
		}
		t.setState(StateCancelled, "cancelled by "+by+" before placement", time.Now().UTC())
		return true
	})
	if !found {
		return false, errTaskNotFound
	}
	return placed, nil
}

// resume picks up the tasks in the store after a restart.
func (b *broker) resume() error {
	ts, err := b.a.tasks.all()
	if err != nil {
		return err
	}
	for _, t := range ts {
		rt, err := rules.ParseTask(t.ID, t.Document)
		if err != nil {
			b.a.log.Error("stored task unreadable", "task", t.ID, "err", err)
			continue
		}
		b.track(t, rt)
		if t.AgreementID != "" && !finalState(t.State) {
			b.catchUp(t.ID, t.AgreementID)
		}
	}
	return nil
}

// catchUp replays ledger events of an in-flight task missed while down.
func (b *broker) catchUp(taskID, agreementID string) {
	recs, err := b.a.ledger.Entries(b.a.runCtx, consensus.Filter{Type: consensus.TypeTaskEvent, Task: taskID})
	if err != nil {
		return
	}
	for _, r := range recs {
		b.onRecord(r)
	}
	_ = agreementID
}

var errNotBroker = errors.New("this agent is not the task's broker")
