package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

func mustNewFSM(t *testing.T) *fsm {
	t.Helper()
	db, err := openBadger(filepath.Join(t.TempDir(), "fsm"), false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	f, err := newFSM(db, testVerifier{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// applyBatches applies each batch as one raft log, starting at raft index
// first, and returns every entry's result.
func applyBatches(t *testing.T, f *fsm, first uint64, batches [][]Entry) []result {
	t.Helper()
	var logs []*raft.Log
	for i, b := range batches {
		data, err := json.Marshal(command{Entries: b})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: first + uint64(i), Type: raft.LogCommand, Data: data})
	}
	var out []result
	for _, r := range f.ApplyBatch(logs) {
		rs, _ := r.([]result) // nil for a skipped (already applied) log
		out = append(out, rs...)
	}
	return out
}

func balances(t *testing.T, f *fsm) map[string]int64 {
	l := &Ledger{fsmDB: f.db}
	return l.Balances()
}

func TestFSMAppliesAndChains(t *testing.T) {
	f := mustNewFSM(t)
	b, p, x := newSigner(t), newSigner(t), newSigner(t)
	agr := agreementEntry(t, b, p, "t1", 1)
	tests := []struct {
		name    string
		entry   Entry
		wantErr error
		dup     bool
	}{
		{"agreement", agr, nil, false},
		{"started by provider", eventEntry(t, p, "t1", agr.ID, "ev1", EventStarted), nil, false},
		{"started by broker is refused", eventEntry(t, b, "t1", agr.ID, "ev2", EventStarted), ErrRejected, false},
		{"next attempt while the first may run", agreementEntry(t, b, p, "t1", 2), ErrRejected, false},
		{"lost by broker", eventEntry(t, b, "t1", agr.ID, "ev3", EventLost), nil, false},
		{"success after lost does not count", eventEntry(t, p, "t1", agr.ID, "ev4", EventSucceeded), ErrRejected, false},
		{"settlement", settlementEntry(t, b, p, "t1", agr.ID, "s1", 700), nil, false},
		{"settlement again is a no-op", settlementEntry(t, b, p, "t1", agr.ID, "s1", 700), nil, true},
		{"same id other payload", settlementEntry(t, b, p, "t1", agr.ID, "s1", 800), ErrRejected, false},
		{"settlement by a stranger", settlementEntry(t, x, p, "t1", agr.ID, "s2", 5), ErrRejected, false},
		{"settlement for unknown agreement", settlementEntry(t, b, p, "t1", "nope", "s3", 5), ErrRejected, false},
		{"stale attempt", agreementEntry(t, b, p, "t1", 1), nil, true},
		{"same attempt other id", mustEntry(t, TypeAgreement, "agr-other", Agreement{V: 1, ID: "agr-other", TaskID: "t1", Broker: b.ID(), Provider: p.ID(), Attempt: 1, Time: t0}, b, p), ErrRejected, false},
		{"next attempt", agreementEntry(t, b, p, "t1", 2), nil, false},
		{"event of the superseded attempt", eventEntry(t, p, "t1", agr.ID, "ev5", EventStarted), ErrRejected, false},
		{"third attempt while the second may run", agreementEntry(t, b, p, "t1", 3), ErrRejected, false},
	}
	var idx uint64 = 1
	wantIndex := uint64(0)
	for _, tt := range tests {
		res := applyBatches(t, f, idx, [][]Entry{{tt.entry}})[0]
		idx++
		if !errors.Is(res.Err, tt.wantErr) || (tt.wantErr == nil) != (res.Err == nil) {
			t.Fatalf("%s: err = %v; want %v", tt.name, res.Err, tt.wantErr)
		}
		if res.Err != nil {
			continue
		}
		if res.Receipt.Duplicate != tt.dup {
			t.Fatalf("%s: duplicate = %v; want %v", tt.name, res.Receipt.Duplicate, tt.dup)
		}
		if !tt.dup {
			wantIndex++
			if res.Receipt.Index != wantIndex {
				t.Fatalf("%s: index %d; want %d", tt.name, res.Receipt.Index, wantIndex)
			}
		}
	}
	bal := balances(t, f)
	if bal[b.ID()] != -700 || bal[p.ID()] != 700 || len(bal) != 2 {
		t.Fatalf("balances = %v; want broker -700, provider 700", bal)
	}
	h, _ := f.state()
	if h.Index != wantIndex {
		t.Fatalf("head index %d; want %d", h.Index, wantIndex)
	}
	rep, err := verifyDB(f.db, testVerifier{}, nil)
	if err != nil || !rep.OK || rep.Head != h.Hash {
		t.Fatalf("verify = %+v, %v; want OK at head %s", rep, err, h.Hash)
	}
	l := &Ledger{fsmDB: f.db}
	if a, ok := l.LatestAgreement("t1"); !ok || a.Attempt != 2 {
		t.Fatalf("latest agreement = %+v, %v; want attempt 2", a, ok)
	}
}

func TestFSMSkipsReplayedLogs(t *testing.T) {
	f := mustNewFSM(t)
	b, p := newSigner(t), newSigner(t)
	agr := agreementEntry(t, b, p, "t1", 1)
	applyBatches(t, f, 1, [][]Entry{{agr}, {settlementEntry(t, b, p, "t1", agr.ID, "s1", 10)}})
	h1, _ := f.state()
	// raft replays logs 1..2 after a restart without a snapshot.
	res := applyBatches(t, f, 1, [][]Entry{{agr}, {settlementEntry(t, b, p, "t1", agr.ID, "s1", 10)}})
	h2, _ := f.state()
	if h1 != h2 || len(res) != 0 {
		t.Fatalf("replay changed the head %+v → %+v (results %v)", h1, h2, res)
	}
}

// propertyEntries builds a random sequence: agreements, events, settlements,
// retried duplicates and entries the state refuses.
func propertyEntries(t *testing.T, rng *rand.Rand, n int) []Entry {
	peers := []*testSigner{newSigner(t), newSigner(t), newSigner(t), newSigner(t)}
	type agr struct {
		e    Entry
		b, p *testSigner
		task string
	}
	var agrs []agr
	var out []Entry
	for i := 0; len(out) < n; i++ {
		switch k := rng.IntN(10); {
		case k < 3 || len(agrs) == 0:
			b, p := peers[rng.IntN(4)], peers[rng.IntN(4)]
			if b == p {
				continue
			}
			task := fmt.Sprintf("task-%d", rng.IntN(6))
			e := agreementEntry(t, b, p, task, rng.IntN(4)+1)
			agrs = append(agrs, agr{e, b, p, task})
			out = append(out, e)
		case k < 5:
			a := agrs[rng.IntN(len(agrs))]
			author, ev := a.p, EventSucceeded
			if rng.IntN(3) == 0 {
				author, ev = a.b, EventLost
			}
			out = append(out, eventEntry(t, author, a.task, a.e.ID, fmt.Sprintf("ev-%d", i), ev))
		case k < 8:
			a := agrs[rng.IntN(len(agrs))]
			out = append(out, settlementEntry(t, a.b, a.p, a.task, a.e.ID, fmt.Sprintf("s-%d", rng.IntN(n)), int64(rng.IntN(1000)+1)))
		default:
			out = append(out, out[rng.IntN(len(out))]) // a retried proposal
		}
	}
	return out
}

// split cuts entries into random batches.
func split(rng *rand.Rand, entries []Entry) [][]Entry {
	var out [][]Entry
	for len(entries) > 0 {
		k := min(rng.IntN(8)+1, len(entries))
		out = append(out, entries[:k])
		entries = entries[k:]
	}
	return out
}

// TestFSMProperty: the same entries applied to two fresh FSMs (in different
// batchings) and to one restored from a snapshot taken midway give the same
// chain head and balances, balances sum to zero, and the chain verifies.
func TestFSMProperty(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			entries := propertyEntries(t, rng, 120)
			a, b, c := mustNewFSM(t), mustNewFSM(t), mustNewFSM(t)
			applyBatches(t, a, 1, split(rng, entries))
			applyBatches(t, b, 1, split(rng, entries))

			mid := rng.IntN(len(entries))
			first := split(rng, entries[:mid])
			src := mustNewFSM(t)
			applyBatches(t, src, 1, first)
			snap, err := src.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sink := &memSink{}
			if err := snap.Persist(sink); err != nil {
				t.Fatal(err)
			}
			snap.Release()
			if err := c.Restore(sink.reader()); err != nil {
				t.Fatal(err)
			}
			applyBatches(t, c, uint64(len(first))+1, split(rng, entries[mid:]))

			ha, _ := a.state()
			for name, f := range map[string]*fsm{"second": b, "restored": c} {
				h, _ := f.state()
				if h.Index != ha.Index || h.Hash != ha.Hash {
					t.Fatalf("%s FSM head %d/%s; first FSM %d/%s", name, h.Index, h.Hash, ha.Index, ha.Hash)
				}
				if !maps.Equal(balances(t, f), balances(t, a)) {
					t.Fatalf("%s FSM balances %v; first %v", name, balances(t, f), balances(t, a))
				}
			}
			var sum int64
			for _, v := range balances(t, a) {
				sum += v
			}
			if sum != 0 {
				t.Fatalf("balances sum to %d", sum)
			}
			if rep, err := verifyDB(c.db, testVerifier{}, nil); err != nil || !rep.OK {
				t.Fatalf("verify restored: %+v, %v", rep, err)
			}
		})
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }
func (s *memSink) reader() *readCloser {
	return &readCloser{bytes.NewReader(s.Bytes())}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func TestVerifyNamesTamperedRecord(t *testing.T) {
	f := mustNewFSM(t)
	b, p := newSigner(t), newSigner(t)
	var batch []Entry // agreement, settlement, agreement...: one settlement per attempt
	for i := range 5 {
		task := fmt.Sprintf("t%d", i)
		agr := agreementEntry(t, b, p, task, 1)
		batch = append(batch, agr, settlementEntry(t, b, p, task, agr.ID, fmt.Sprintf("s%d", i), 100))
	}
	applyBatches(t, f, 1, [][]Entry{batch})
	setRecordTime(t, f.db, 4, t0.Add(time.Hour))
	rep, err := verifyDB(f.db, testVerifier{}, nil)
	if err != nil || rep.OK || rep.FirstBad != 4 || !strings.Contains(rep.Reason, "record time") {
		t.Fatalf("verify after changing a record's time = %+v, %v; want first bad index 4", rep, err)
	}
	setRecordTime(t, f.db, 4, t0)
	flipPayloadByte(t, f.db, 6)
	rep, err = verifyDB(f.db, testVerifier{}, nil)
	if err != nil || rep.OK || rep.FirstBad != 6 {
		t.Fatalf("verify after tampering = %+v, %v; want first bad index 6", rep, err)
	}
}

// setRecordTime rewrites the time of the stored record at index.
func setRecordTime(t *testing.T, db *badger.DB, index uint64, at time.Time) {
	t.Helper()
	err := db.Update(func(txn *badger.Txn) error {
		rec, err := getRecord(txn, index)
		if err != nil {
			return err
		}
		rec.Time = at
		b, _ := json.Marshal(rec)
		return txn.Set(recordKey(index), b)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flipPayloadByte changes one byte, the last digit of the "amount", in the
// stored record at index.
func flipPayloadByte(t *testing.T, db *badger.DB, index uint64) {
	t.Helper()
	err := db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(recordKey(index))
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		i := bytes.Index(v, []byte(`"amount":`))
		if i < 0 {
			return fmt.Errorf("record %d has no amount", index)
		}
		j := i + len(`"amount":`)
		for v[j+1] >= '0' && v[j+1] <= '9' {
			j++
		}
		v[j] = '0' + (v[j]-'0'+1)%10 // last digit + 1: still valid JSON
		return txn.Set(recordKey(index), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add("settlement", []byte(`{"v":1,"id":"s","agreement_id":"a","payer":"x","payee":"y","amount":5}`))
	f.Add("agreement", []byte(`{"v":1,"id":"a","task_id":"t","broker":"b","provider":"p","attempt":1}`))
	f.Add("nope", []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		e := Entry{Type: typ, ID: "s", Payload: payload}
		p, err := e.decode()
		if err == nil && p.entryID() != e.ID {
			t.Fatalf("decoded entry id %q != %q", p.entryID(), e.ID)
		}
		_ = e.Validate(testVerifier{}) // must not panic
	})
}

// TestFSMSettlesAnAttemptOnce: a second settlement of the same attempt,
// under another id, is refused and moves no balance; the same settlement
// again is a duplicate, not a second payment.
func TestFSMSettlesAnAttemptOnce(t *testing.T) {
	f := mustNewFSM(t)
	b, p := newSigner(t), newSigner(t)
	agr := agreementEntry(t, b, p, "t1", 1)
	first := settlementEntry(t, b, p, "t1", agr.ID, "s1", 100)
	res := applyBatches(t, f, 1, [][]Entry{{agr, first}, {first}, {settlementEntry(t, b, p, "t1", agr.ID, "s2", 100)}})
	if len(res) != 4 || res[0].Err != nil || res[1].Err != nil || res[2].Err != nil {
		t.Fatalf("agreement, settlement, same settlement again: %+v", res)
	}
	if err := res[3].Err; !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "already settled") {
		t.Fatalf("second settlement of the attempt: %v; want refused as already settled", err)
	}
	if got := balances(t, f); got[p.ID()] != 100 || got[b.ID()] != -100 {
		t.Fatalf("balances %v; want the attempt paid once (100)", got)
	}
}
