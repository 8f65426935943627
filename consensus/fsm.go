package consensus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"

	"github.com/pcm-mesh/pcm/mesh/gencache"
)

// Key layout of the FSM database.
var (
	prefixRecord    = []byte("r/") // r/<index be64>          → Record JSON
	prefixID        = []byte("i/") // i/<type>\x00<id>        → index be64
	prefixBalance   = []byte("b/") // b/<peer>                → int64 be64
	prefixAgreement = []byte("a/") // a/<task id>             → index be64 of the latest agreement
	prefixFinal     = []byte("f/") // f/<agreement id>        → the attempt's final event kind
	prefixSettled   = []byte("s/") // s/<agreement id>        → id of the attempt's settlement (or of its final event, billed)
	prefixAdmitted  = []byte("p/") // p/<peer>                → role admitted by a voter's membership entry
	prefixRefused   = []byte("x/") // x/<raft index be64><n be32> → refusedRecord JSON
	keyHead         = []byte("m/head")
	keyConfig       = []byte("m/config") // the latest raft configuration applied: voters and non-voters
)

// fsmPrefixes are every prefix of the FSM's keys: a snapshot holds these
// keys and nothing else of the database (which also holds the raft store
// and the agent's keys), and a restore replaces exactly these.
var fsmPrefixes = [][]byte{prefixRecord, prefixID, prefixBalance, prefixAgreement, prefixFinal,
	prefixSettled, prefixAdmitted, prefixRefused, []byte("m/")}

func isFSMKey(k []byte) bool {
	for _, p := range fsmPrefixes {
		if bytes.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// head is the chain head and the last raft log applied.
type head struct {
	Index     uint64 `json:"index"`
	Hash      string `json:"hash"`
	RaftIndex uint64 `json:"raft_index"`
}

// command is the data of one raft log: a batch of entries proposed together.
type command struct {
	Entries []Entry `json:"entries"`
}

// result is the outcome of one entry of a batch.
type result struct {
	Receipt Receipt
	Err     error
}

// fsm applies batches to Badger, links records into the hash chain and keeps
// balances. It is deterministic: every replica applying the same logs reaches
// the same state and head.
type fsm struct {
	db       *badger.DB
	verifier Verifier
	verified verifiedCache
	logger   *slog.Logger
	// checkPayload checks payload content beyond the schema (Config.CheckPayload).
	checkPayload func(typ string, payload []byte) error
	refused      Counts
	notify       func([]Record)                   // called after each commit, in order, on the FSM goroutine
	agrs         *gencache.Cache[any, *Agreement] // decoded agreements, by id and by record index

	mu      sync.Mutex // guards head and changed
	head    head
	changed chan struct{} // closed and replaced whenever head changes
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM(db *badger.DB, v Verifier, logger *slog.Logger) (*fsm, error) {
	f := &fsm{db: db, verifier: v, verified: newVerifiedCache(), agrs: newAgrCache(), logger: logger, changed: make(chan struct{})}
	h, err := readHead(db)
	if err != nil {
		return nil, err
	}
	f.head = h
	return f, nil
}

func readHead(db *badger.DB) (head, error) {
	h := head{Hash: GenesisHash}
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyHead)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &h) })
	})
	if err != nil {
		return h, fmt.Errorf("read ledger head: %w", err)
	}
	return h, nil
}

// state returns the head and a channel closed at the next change.
func (f *fsm) state() (head, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head, f.changed
}

func (f *fsm) setHead(h head) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.head = h
	close(f.changed)
	f.changed = make(chan struct{})
}

// Apply applies one log.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed logs in one Badger transaction (split only
// if Badger says it is too big). Logs already applied (raft index at or below
// the stored head) are skipped, so replay after a restart is a no-op.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	cur, _ := f.state()
	cmds := make([]*command, len(logs))
	var all []*Entry
	var confs []*raft.Log
	for i, l := range logs {
		if l.Type == raft.LogConfiguration && l.Index > cur.RaftIndex {
			confs = append(confs, l)
		}
		if l.Type != raft.LogCommand || l.Index <= cur.RaftIndex {
			continue
		}
		var c command
		if err := json.Unmarshal(l.Data, &c); err != nil {
			out[i] = []result{{Err: fmt.Errorf("raft log %d does not decode: %w", l.Index, ErrInvalid)}}
			continue
		}
		cmds[i] = &c
		for j := range c.Entries {
			all = append(all, &c.Entries[j])
		}
	}
	sigOK, decoded := f.verifyAll(all)

	w := &writer{db: f.db, txn: f.db.NewTransaction(true)}
	defer func() { w.txn.Discard() }()
	h := cur
	var applied []Record
	k := 0
	for i, l := range logs {
		if l.Index > h.RaftIndex {
			h.RaftIndex = l.Index
		}
		if len(confs) > 0 && confs[0] == l {
			confs = confs[1:]
			if err := w.setConfig(raft.DecodeConfiguration(l.Data)); err != nil {
				panic(fmt.Sprintf("consensus: write ledger configuration at raft index %d: %v", l.Index, err))
			}
		}
		if cmds[i] == nil {
			continue
		}
		res := make([]result, len(cmds[i].Entries))
		for j := range cmds[i].Entries {
			e := &cmds[i].Entries[j]
			if err := sigOK[k]; err != nil {
				res[j].Err = err
				f.recordRefused(w, l.Index, j, e, err)
			} else {
				rec, dup, err := f.applyEntry(w, h, e, decoded[k])
				switch {
				case err != nil:
					res[j].Err = err
					f.recordRefused(w, l.Index, j, e, err)
				case dup:
					res[j].Receipt = Receipt{Index: rec.Index, Hash: rec.Hash, Duplicate: true}
				default:
					h.Index, h.Hash = rec.Index, rec.Hash
					// The head is written with every record, so a transaction
					// split by size never leaves records beyond the head.
					if err := w.setHead(h); err != nil {
						panic(fmt.Sprintf("consensus: write ledger head %d: %v", h.Index, err))
					}
					applied = append(applied, rec)
					res[j].Receipt = Receipt{Index: rec.Index, Hash: rec.Hash}
				}
			}
			k++
		}
		out[i] = res
	}
	if h != cur {
		err := w.setHead(h)
		if err == nil {
			err = w.txn.Commit()
		}
		if err != nil {
			// The state on disk is unknown; a replica must not diverge silently.
			panic(fmt.Sprintf("consensus: commit ledger state at raft index %d: %v", h.RaftIndex, err))
		}
		f.setHead(h)
	}
	if len(applied) > 0 && f.notify != nil {
		f.notify(applied)
	}
	return out
}

// verifyAll checks the signatures of entries not verified by this process
// already (at propose time), in parallel: every replica checks every entry
// once, so a leader cannot commit what a follower would refuse. It returns
// one error per entry, and the payloads it decoded on the way (nil for
// entries it did not check), so that apply need not decode them again.
func (f *fsm) verifyAll(entries []*Entry) ([]error, []payload) {
	errs := make([]error, len(entries))
	decoded := make([]payload, len(entries))
	var todo []int
	for i, e := range entries {
		if p, ok := f.verified.get(e); ok {
			decoded[i] = p
		} else {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return errs, decoded
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := w; n < len(todo); n += workers {
				i := todo[n]
				p, err := entries[i].decode()
				if err == nil {
					err = entries[i].verifySignatures(p.signers(), f.verifier)
				}
				errs[i], decoded[i] = err, p
			}
		}()
	}
	wg.Wait()
	return errs, decoded
}

// applyEntry checks e against the state and writes it; p is e's decoded
// payload, or nil to decode it here. dup reports an id already applied
// with the same payload (rec is then the original record).
func (f *fsm) applyEntry(w *writer, h head, e *Entry, p payload) (rec Record, dup bool, err error) {
	if p == nil {
		if p, err = e.decode(); err != nil {
			return rec, false, err
		}
	}
	idKey := idKey(e.Type, e.ID)
	if idx, ok, err := w.getIndex(idKey); err != nil {
		return rec, false, err
	} else if ok {
		orig, err := getRecord(w.txn, idx)
		if err != nil {
			return rec, false, err
		}
		if string(orig.Payload) != string(e.Payload) {
			return rec, false, fmt.Errorf("%s id %q is already used by record %d with a different payload; use a new id: %w", e.Type, e.ID, idx, ErrRejected)
		}
		return orig, true, nil
	}
	if err := f.checkContentOf(e, p); err != nil {
		return rec, false, err
	}
	if err := f.checkAuthor(w, p); err != nil {
		return rec, false, fmt.Errorf("%s %q: %w", e.Type, e.ID, err)
	}
	if err := f.checkState(w, p); err != nil {
		return rec, false, fmt.Errorf("%s %q: %w", e.Type, e.ID, err)
	}
	rec = Record{Index: h.Index + 1, Time: p.when(), Entry: *e, PrevHash: h.Hash}
	rec.Hash = ChainHash(rec.PrevHash, rec.Index, &rec.Entry)
	if ev, ok := p.(*TaskEvent); ok && billsAttempt(ev.Event) {
		a, err := f.agreementByID(w, ev.AgreementID)
		if err != nil {
			return rec, false, err
		}
		if a.Billed() {
			rec.Billed = &Billed{Payer: a.Broker, Payee: a.Provider, Amount: a.Bill.Amount(a.Price, ev.Usage.CPUSeconds, ev.Usage.WallSeconds)}
		}
	}
	rb, err := json.Marshal(rec)
	if err != nil {
		return rec, false, fmt.Errorf("encode record %d: %w", rec.Index, err)
	}
	if err := firstErr(w.set(recordKey(rec.Index), rb), w.set(idKey, be64(rec.Index))); err != nil {
		return rec, false, err
	}
	switch p := p.(type) {
	case *Agreement:
		err = w.set(append(append([]byte{}, prefixAgreement...), p.TaskID...), be64(rec.Index))
		// The checks of this attempt's events and settlement look it up
		// by id and by index: no need to read its record back.
		f.agrs.Put(p.ID, p)
		f.agrs.Put(rec.Index, p)
	case *Settlement:
		err = firstErr(w.addBalance(p.Payer, -p.Amount), w.addBalance(p.Payee, p.Amount),
			w.set(append(append([]byte{}, prefixSettled...), p.AgreementID...), []byte(e.ID)))
	case *MembershipNote:
		err = w.applyAdmission(p)
	case *TaskEvent:
		if p.Event != EventStarted {
			err = w.set(append(append([]byte{}, prefixFinal...), p.AgreementID...), []byte(p.Event))
		}
		if b := rec.Billed; err == nil && b != nil {
			err = firstErr(w.addBalance(b.Payer, -b.Amount), w.addBalance(b.Payee, b.Amount),
				w.set(append(append([]byte{}, prefixSettled...), p.AgreementID...), []byte(e.ID)))
		}
	}
	return rec, false, err
}

// billsAttempt says whether an attempt that ends with event is billed:
// succeeded, failed and cancelled attempts are; lost ones (the provider
// stopped renewing its lease) are not.
func billsAttempt(event string) bool {
	return event == EventSucceeded || event == EventFailed || event == EventCancelled
}

// checkState enforces the rules that depend on earlier records.
func (f *fsm) checkState(w *writer, p payload) error {
	switch p := p.(type) {
	case *Agreement:
		prev, ok, err := f.latestAgreement(w.txn, p.TaskID)
		if err != nil {
			return err
		}
		if ok && prev.Attempt >= p.Attempt {
			return fmt.Errorf("task %q already has agreement %q with attempt %d; a new agreement needs a higher attempt: %w", p.TaskID, prev.ID, prev.Attempt, ErrRejected)
		}
		if ok {
			// Fencing: a new attempt only once the previous one has ended
			// as lost or failed; while it may still run (no final event,
			// its lease not yet declared expired) nobody else may run it.
			end, err := finalEvent(w.txn, prev.ID)
			if err != nil {
				return err
			}
			if end != EventLost && end != EventFailed {
				why := "has not ended"
				if end != "" {
					why = "ended " + end
				}
				return fmt.Errorf("task %q: attempt %d (agreement %q) %s; a new agreement needs the previous attempt lost or failed: %w", p.TaskID, prev.Attempt, prev.ID, why, ErrRejected)
			}
		}
	case *TaskEvent:
		a, err := f.agreementByID(w, p.AgreementID)
		if err != nil {
			return err
		}
		if a.TaskID != p.TaskID {
			return fmt.Errorf("agreement %q is for task %q, not %q: %w", a.ID, a.TaskID, p.TaskID, ErrRejected)
		}
		ok := false
		switch p.Event {
		case EventStarted, EventSucceeded, EventFailed:
			ok = p.Author == a.Provider
		case EventLost:
			ok = p.Author == a.Broker
		case EventCancelled:
			ok = p.Author == a.Provider || p.Author == a.Broker
		}
		if !ok {
			return fmt.Errorf("event %q must be authored by the agreement's provider or broker as documented, not %s: %w", p.Event, p.Author, ErrRejected)
		}
		latest, _, err := f.latestAgreement(w.txn, p.TaskID)
		if err != nil {
			return err
		}
		if latest.ID != a.ID {
			return fmt.Errorf("agreement %q is superseded by %q: events of a superseded attempt do not count: %w", a.ID, latest.ID, ErrRejected)
		}
		end, err := finalEvent(w.txn, a.ID)
		if err != nil {
			return err
		}
		if end != "" {
			// The first final event of an attempt wins: a provider's late
			// success cannot follow the broker's "lost", nor the reverse.
			return fmt.Errorf("attempt %q already ended %s; %s does not count: %w", a.ID, end, p.Event, ErrRejected)
		}
	case *Settlement:
		a, err := f.agreementByID(w, p.AgreementID)
		if err != nil {
			return err
		}
		if a.Billed() {
			return fmt.Errorf("agreement %q is billed by the ledger when its attempt ends; it takes no settlement entry: %w", a.ID, ErrRejected)
		}
		if a.Broker != p.Payer || a.Provider != p.Payee || (p.TaskID != "" && p.TaskID != a.TaskID) {
			return fmt.Errorf("settlement must pay from the agreement's broker %s to its provider %s for task %q: %w", a.Broker, a.Provider, a.TaskID, ErrRejected)
		}
		// Exactly one settlement per attempt: a second one (another id for
		// the same agreement) would bill the attempt twice.
		prev, err := settledBy(w.txn, p.AgreementID)
		if err != nil {
			return err
		}
		if prev != "" {
			return fmt.Errorf("attempt %q is already settled by settlement %q; an attempt is settled once: %w", p.AgreementID, prev, ErrRejected)
		}
	}
	return nil
}

func (f *fsm) agreementByID(w *writer, id string) (*Agreement, error) {
	if a, ok := f.agrs.Get(id); ok {
		return a, nil
	}
	a, err := agreementByID(w, id)
	if err == nil {
		f.agrs.Put(id, a)
	}
	return a, err
}

// latestAgreement is the package's latestAgreement through the cache:
// the index of a task's latest agreement is read, its record decoded
// once.
func (f *fsm) latestAgreement(txn *badger.Txn, taskID string) (Agreement, bool, error) {
	idx, ok, err := latestAgreementIndex(txn, taskID)
	if err != nil || !ok {
		return Agreement{}, false, err
	}
	if a, ok := f.agrs.Get(idx); ok {
		return *a, true, nil
	}
	a, err := agreementAt(txn, idx)
	if err != nil {
		return Agreement{}, false, err
	}
	f.agrs.Put(idx, &a)
	return a, true, nil
}

func agreementByID(w *writer, id string) (*Agreement, error) {
	idx, ok, err := w.getIndex(idKey(TypeAgreement, id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("agreement %q is not in the ledger; commit the agreement first: %w", id, ErrRejected)
	}
	rec, err := getRecord(w.txn, idx)
	if err != nil {
		return nil, err
	}
	var a Agreement
	if err := json.Unmarshal(rec.Payload, &a); err != nil {
		return nil, fmt.Errorf("record %d: %w", idx, err)
	}
	return &a, nil
}

func latestAgreement(txn *badger.Txn, taskID string) (Agreement, bool, error) {
	idx, ok, err := latestAgreementIndex(txn, taskID)
	if err != nil || !ok {
		return Agreement{}, false, err
	}
	a, err := agreementAt(txn, idx)
	return a, err == nil, err
}

// latestAgreementIndex is the record index of a task's latest agreement.
func latestAgreementIndex(txn *badger.Txn, taskID string) (uint64, bool, error) {
	item, err := txn.Get(append(append([]byte{}, prefixAgreement...), taskID...))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var idx uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("latest agreement of task %q: index of %d bytes, want 8", taskID, len(v))
		}
		idx = binary.BigEndian.Uint64(v)
		return nil
	})
	return idx, err == nil, err
}

// agreementAt decodes the agreement recorded at index.
func agreementAt(txn *badger.Txn, index uint64) (Agreement, error) {
	var a Agreement
	rec, err := getRecord(txn, index)
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(rec.Payload, &a); err != nil {
		return a, fmt.Errorf("record %d: %w", index, err)
	}
	return a, nil
}

// finalEvent returns how an attempt ended ("" while it has not).
func finalEvent(txn *badger.Txn, agreementID string) (string, error) {
	return stateValue(txn, prefixFinal, agreementID)
}

// settledBy returns the id of an attempt's settlement ("" before it).
func settledBy(txn *badger.Txn, agreementID string) (string, error) {
	return stateValue(txn, prefixSettled, agreementID)
}

func stateValue(txn *badger.Txn, prefix []byte, id string) (string, error) {
	item, err := txn.Get(append(append([]byte{}, prefix...), id...))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	v, err := item.ValueCopy(nil)
	return string(v), err
}

// AttemptEnd returns how an attempt ended in the ledger ("" while it has
// not): the first final event of an attempt is the one that counts.
func (l *Ledger) AttemptEnd(agreementID string) string {
	var end string
	_ = l.fsmDB.View(func(txn *badger.Txn) error {
		var err error
		end, err = finalEvent(txn, agreementID)
		return err
	})
	return end
}

func getRecord(txn *badger.Txn, index uint64) (Record, error) {
	var rec Record
	item, err := txn.Get(recordKey(index))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rec, fmt.Errorf("record %d: %w", index, ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("read record %d: %w", index, err)
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) })
	if err != nil {
		return rec, fmt.Errorf("record %d does not decode: %w", index, err)
	}
	return rec, nil
}

func recordKey(index uint64) []byte { return append(append([]byte{}, prefixRecord...), be64(index)...) }

func idKey(typ, id string) []byte {
	k := append(append([]byte{}, prefixID...), typ...)
	return append(append(k, 0), id...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// writer is a Badger transaction that commits and renews itself when it
// grows too big.
type writer struct {
	db  *badger.DB
	txn *badger.Txn
}

func (w *writer) set(k, v []byte) error {
	err := w.txn.Set(k, v)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = w.txn.Commit(); err != nil {
			return fmt.Errorf("commit ledger state: %w", err)
		}
		w.txn = w.db.NewTransaction(true)
		err = w.txn.Set(k, v)
	}
	return err
}

func (w *writer) setHead(h head) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return w.set(keyHead, b)
}

func (w *writer) getIndex(k []byte) (uint64, bool, error) {
	item, err := w.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil || len(v) != 8 {
		return 0, false, fmt.Errorf("index key %q is corrupt: %v", k, err)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

func (w *writer) addBalance(peer string, delta int64) error {
	k := append(append([]byte{}, prefixBalance...), peer...)
	cur, _, err := w.getIndex(k)
	if err != nil {
		return err
	}
	return w.set(k, be64(uint64(int64(cur)+delta)))
}
