package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Role is a node's part in the ledger.
type Role string

// Roles.
const (
	RoleVoter    Role = "voter"
	RoleNonVoter Role = "nonvoter"
	RoleClient   Role = "client" // holds no copy; reads and proposes through a replica
)

// Ledger is one node's view of the replicated ledger.
type Ledger struct {
	cfg    Config
	logger *slog.Logger

	store logStore
	fsmDB *badger.DB // the agent's state database (OpenDB): the FSM's keys and the agent's
	ownDB bool       // Open opened fsmDB, so Close closes it
	fsm   *fsm
	snaps raft.SnapshotStore
	raft  *raft.Raft

	// memberMu serialises the leader's membership decisions: a join
	// counts the replicas, then adds one, and concurrent joins must not
	// all see the same count (they did: 48 replicas for a cap of 9).
	memberMu sync.Mutex

	proposals chan *proposal
	inflight  chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	subsMu sync.Mutex
	subs   map[int]*subscriber
	nextID int

	addedAt sync.Map // node → time the leader added it as a replica (open admission)
	refused Counts

	viaMu      sync.Mutex
	via        []string // replicas a client-role node talks through
	leaderHint string   // the leader as last reported by a peer (clients)

	rpcMu       sync.Mutex
	rpcSessions map[string]*sessionSlot // sessions with peers, by peer id (rpcsession.go)
	noSession   map[string]time.Time    // peers of earlier versions, until when

	bill  billGate     // whether every replica reads billed agreements (billing.go)
	reads atomic.Int32 // the agreement version this replica reads (status; tests lower it)
}

// Open opens the ledger's stores in cfg.Dir. It starts nothing.
func Open(cfg Config) (*Ledger, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "ledger", "node", shortID(cfg.ID))
	db, ownDB := cfg.DB, false
	if db == nil {
		var err error
		if db, err = OpenDB(cfg.Dir, logger); err != nil {
			return nil, err
		}
		ownDB = true
	}
	store, err := openLogStore(cfg.Dir, logger.With("db", "raft"))
	if err != nil {
		if ownDB {
			_ = db.Close()
		}
		return nil, err
	}
	closeDBs := func() {
		_ = store.Close()
		if ownDB {
			_ = db.Close()
		}
	}
	f, err := newFSM(db, cfg.Verifier, logger)
	if err != nil {
		closeDBs()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, newHCLogger(logger.With("component", "snapshots")))
	if err != nil {
		closeDBs()
		return nil, fmt.Errorf("open ledger snapshots in %s: %w", cfg.Dir, err)
	}
	l := &Ledger{
		cfg: cfg, logger: logger, store: store, fsmDB: db, ownDB: ownDB, fsm: f, snaps: snaps,
		proposals: make(chan *proposal, 4*cfg.MaxBatch),
		inflight:  make(chan struct{}, cfg.MaxInflight),
		done:      make(chan struct{}),
		subs:      make(map[int]*subscriber),
	}
	l.reads.Store(BilledAgreementVersion)
	f.notify = l.publish
	f.checkPayload = cfg.CheckPayload
	if g, ok := cfg.Transport.(gated); ok {
		admit := l.admitRaft
		g.gate().admit.Store(&admit)
	}
	return l, nil
}

// Start starts raft, bootstrapping a one-voter cluster when cfg.Bootstrap is
// set and no raft state exists, and the leader's batcher and voter monitor.
func (l *Ledger) Start(ctx context.Context) error {
	if l.raft != nil {
		return errors.New("ledger already started")
	}
	rc := l.cfg.raftConfig()
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("ledger raft config: %w", err)
	}
	if l.cfg.Bootstrap {
		has, err := raft.HasExistingState(l.store, l.store, l.snaps)
		if err != nil {
			return fmt.Errorf("inspect ledger state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(l.cfg.ID), Address: raft.ServerAddress(l.cfg.ID)}}}
			if err := raft.BootstrapCluster(rc, l.store, l.store, l.snaps, l.cfg.Transport, conf); err != nil {
				return fmt.Errorf("bootstrap ledger: %w", err)
			}
			l.logger.Info("bootstrapped a new ledger")
		}
	}
	r, err := raft.NewRaft(rc, l.fsm, l.store, l.store, l.snaps, l.cfg.Transport)
	if err != nil {
		return fmt.Errorf("start ledger raft: %w", err)
	}
	l.raft = r
	obs := make(chan raft.Observation, 64)
	r.RegisterObserver(raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	}))
	l.wg.Add(2)
	go l.batcher()
	go l.monitor(obs)
	return ctx.Err()
}

// Close stops raft and the stores; it is idempotent and waits for every
// goroutine the ledger started.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeSessions()
		var errs []error
		if l.raft != nil {
			errs = append(errs, l.raft.Shutdown().Error())
		}
		l.wg.Wait()
		if c, ok := l.cfg.Transport.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
		l.subsMu.Lock()
		for id, s := range l.subs {
			s.stop()
			delete(l.subs, id)
		}
		l.subsMu.Unlock()
		errs = append(errs, l.store.Close())
		if l.ownDB {
			errs = append(errs, l.fsmDB.Close())
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

func (l *Ledger) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// IsLeader reports whether this node leads the ledger.
func (l *Ledger) IsLeader() bool { return l.raft != nil && l.raft.State() == raft.Leader }

// Role reports this node's part: voter or non-voter if it is in the raft
// configuration, else client.
func (l *Ledger) Role() Role {
	if l.raft == nil {
		return RoleClient
	}
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return RoleClient
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(l.cfg.ID) {
			if s.Suffrage == raft.Voter {
				return RoleVoter
			}
			return RoleNonVoter
		}
	}
	return RoleClient
}

// Term is raft's current term on this node (0 before Start).
func (l *Ledger) Term() uint64 {
	if l.raft == nil {
		return 0
	}
	return l.raft.CurrentTerm()
}

// Head returns the local chain head.
func (l *Ledger) Head() (index uint64, hash string) {
	h, _ := l.fsm.state()
	return h.Index, h.Hash
}

// WaitApplied waits until the local FSM has applied ledger index index.
func (l *Ledger) WaitApplied(ctx context.Context, index uint64) error {
	for {
		h, changed := l.fsm.state()
		if h.Index >= index {
			return nil
		}
		select {
		case <-changed:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("wait for ledger index %d (at %d): %w", index, h.Index, ctx.Err())
		}
	}
}

func (l *Ledger) leader() string {
	if l.raft == nil {
		return ""
	}
	_, id := l.raft.LeaderWithID()
	return string(id)
}

// proposal is one entry waiting for the leader's batcher.
type proposal struct {
	entry Entry
	done  chan result
}

// errRetry marks a proposal that never reached the raft log; it is retried.
var errRetry = errors.New("proposal not appended; retry")

// Propose validates e (schema, size, signatures) and commits it. A non-leader
// forwards it to the leader. It returns after the leader applied the entry
// and, on a replica, after the local FSM applied it too, so a read that
// follows sees it. A duplicate id with the same payload returns the original
// record's receipt with Duplicate set. When the leader changes during the
// proposal it returns ErrOutcomeUnknown: retry with the same entry.
func (l *Ledger) Propose(ctx context.Context, e Entry) (Receipt, error) {
	return l.propose(ctx, e, 0, true)
}

// ProposeCommitted is Propose without waiting for this replica to apply
// the entry: it returns once the leader has applied it. For a proposer
// that does not read the entry back at once (a broker's agreement, a
// provider's task event): a follower learns of the commit only with the
// leader's next append, which under load is most of a proposal's time.
func (l *Ledger) ProposeCommitted(ctx context.Context, e Entry) (Receipt, error) {
	return l.propose(ctx, e, 0, false)
}

// propose commits e, waiting for the local replica to apply it when
// waitLocal is set.
func (l *Ledger) propose(ctx context.Context, e Entry, hops int, waitLocal bool) (Receipt, error) {
	if l.closed() {
		return Receipt{}, ErrClosed
	}
	p, err := e.validate(l.cfg.Verifier)
	if err != nil {
		l.countRefusal(RefusedPropose)
		return Receipt{}, err
	}
	if err := l.fsm.checkContent(&e); err != nil {
		l.countRefusal(RefusedPropose)
		return Receipt{}, err
	}
	if err := l.fsm.checkAuthorNow(&e); err != nil {
		l.countRefusal(RefusedPropose)
		return Receipt{}, err
	}
	l.fsm.verified.add(&e, p)
	backoff := 10 * time.Millisecond
	for {
		var rec Receipt
		var err error
		if l.IsLeader() {
			if err := l.checkBilled(ctx, p); err != nil {
				l.countRefusal(RefusedPropose)
				return Receipt{}, err
			}
			rec, err = l.proposeLocal(ctx, e)
		} else if hops >= maxHops {
			return Receipt{}, fmt.Errorf("forwarded proposal reached a node that is not the leader: %w", ErrNotLeader)
		} else if target := l.forwardTarget(); target != "" {
			var resp response
			resp, err = l.call(ctx, target, request{Op: opPropose, Hops: hops + 1, Entry: &e})
			if err == nil {
				rec = *resp.Receipt
			}
			if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrClosed) {
				err = errRetry
			}
		} else {
			err = errRetry
		}
		if err == nil {
			if waitLocal && l.Role() != RoleClient {
				if werr := l.WaitApplied(ctx, rec.Index); werr != nil {
					return rec, fmt.Errorf("committed at index %d but not yet applied here: %w", rec.Index, werr)
				}
			}
			return rec, nil
		}
		if !errors.Is(err, errRetry) {
			return Receipt{}, err
		}
		select {
		case <-ctx.Done():
			return Receipt{}, fmt.Errorf("%w: %w", ErrNotLeader, ctx.Err())
		case <-l.done:
			return Receipt{}, ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// forwardTarget is the leader, or for a node outside the raft
// configuration, a replica it joined through.
func (l *Ledger) forwardTarget() string {
	if ld := l.leader(); ld != "" && ld != l.cfg.ID {
		return ld
	}
	// A client, or a replica that knows no leader (e.g. one removed from
	// the configuration while it could not be reached, which raft never
	// tells), goes through the leader its peers reported, else through
	// the peers it joined by. Hints keep chains of clients short.
	l.viaMu.Lock()
	defer l.viaMu.Unlock()
	if l.leaderHint != "" && l.leaderHint != l.cfg.ID {
		return l.leaderHint
	}
	for _, v := range l.via {
		if v != l.cfg.ID {
			return v
		}
	}
	return ""
}

// proposeLocal hands e to the leader's batcher and waits for its result.
func (l *Ledger) proposeLocal(ctx context.Context, e Entry) (Receipt, error) {
	p := &proposal{entry: e, done: make(chan result, 1)}
	select {
	case l.proposals <- p:
	case <-ctx.Done():
		return Receipt{}, fmt.Errorf("%w: %w", ErrNotLeader, ctx.Err())
	case <-l.done:
		return Receipt{}, ErrClosed
	}
	select {
	case r := <-p.done:
		return r.Receipt, r.Err
	case <-ctx.Done():
		return Receipt{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	}
}

// batcher coalesces queued proposals into one raft log each, keeping up to
// MaxInflight batches in flight; while they are, new proposals queue up and
// form the next, larger batch.
func (l *Ledger) batcher() {
	defer l.wg.Done()
	for {
		var first *proposal
		select {
		case <-l.done:
			l.failQueued()
			return
		case first = <-l.proposals:
		}
		select {
		case l.inflight <- struct{}{}:
		case <-l.done:
			first.done <- result{Err: ErrClosed}
			l.failQueued()
			return
		}
		batch := []*proposal{first}
		size := len(first.entry.Payload)
	drain:
		for len(batch) < l.cfg.MaxBatch && size < 4<<20 {
			select {
			case p := <-l.proposals:
				batch = append(batch, p)
				size += len(p.entry.Payload)
			default:
				break drain
			}
		}
		cmd := command{Entries: make([]Entry, len(batch))}
		for i, p := range batch {
			cmd.Entries[i] = p.entry
		}
		data, err := json.Marshal(cmd)
		if err != nil {
			for _, p := range batch {
				p.done <- result{Err: fmt.Errorf("encode batch: %w", err)}
			}
			<-l.inflight
			continue
		}
		f := l.raft.Apply(data, 0)
		l.wg.Add(1)
		go l.awaitBatch(f, batch)
	}
}

func (l *Ledger) awaitBatch(f raft.ApplyFuture, batch []*proposal) {
	defer l.wg.Done()
	defer func() { <-l.inflight }()
	// raft never answers a future still queued in its (buffered) apply
	// channel when it shuts down, so Error could block forever and with it
	// Close: wait for the answer or for the ledger to close.
	answered := make(chan error, 1)
	go func() { answered <- f.Error() }()
	var err error
	select {
	case err = <-answered:
	case <-l.done:
		select {
		case err = <-answered:
		case <-time.After(5 * time.Second):
			err = raft.ErrRaftShutdown
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		err = errRetry // never appended
	case errors.Is(err, raft.ErrRaftShutdown):
		err = fmt.Errorf("%w: ledger shut down: %w", ErrOutcomeUnknown, ErrClosed)
	default:
		err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	if err != nil {
		for _, p := range batch {
			p.done <- result{Err: err}
		}
		return
	}
	res, _ := f.Response().([]result)
	for i, p := range batch {
		if i < len(res) {
			p.done <- res[i]
		} else {
			p.done <- result{Err: fmt.Errorf("batch applied without a result: %w", ErrOutcomeUnknown)}
		}
	}
}

func (l *Ledger) failQueued() {
	for {
		select {
		case p := <-l.proposals:
			p.done <- result{Err: ErrClosed}
		default:
			return
		}
	}
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// knownLeader is the leader raft reports, else the one peers reported.
func (l *Ledger) knownLeader() string {
	if ld := l.leader(); ld != "" {
		return ld
	}
	l.viaMu.Lock()
	defer l.viaMu.Unlock()
	return l.leaderHint
}

// setLeaderHint remembers the leader a peer reported.
func (l *Ledger) setLeaderHint(id string) {
	l.viaMu.Lock()
	l.leaderHint = id
	l.viaMu.Unlock()
}

// dropLeaderHint forgets a reported leader that failed to answer.
func (l *Ledger) dropLeaderHint(id string) {
	l.viaMu.Lock()
	if l.leaderHint == id {
		l.leaderHint = ""
	}
	l.viaMu.Unlock()
}
