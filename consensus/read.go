package consensus

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Filter selects records. Empty fields match everything.
type Filter struct {
	Type       string `json:"type,omitempty"`
	Peer       string `json:"peer,omitempty"` // any party: signer, author, broker, provider, payer, payee, node
	Task       string `json:"task,omitempty"`
	From       uint64 `json:"from,omitempty"`  // first index
	Limit      int    `json:"limit,omitempty"` // default 1000, at most 10000
	Consistent bool   `json:"consistent,omitempty"`
}

const (
	defaultLimit = 1000
	maxLimit     = 10000
)

// parties are the payload fields that name peers or tasks.
type parties struct {
	TaskID   string `json:"task_id"`
	Author   string `json:"author"`
	Broker   string `json:"broker"`
	Provider string `json:"provider"`
	Payer    string `json:"payer"`
	Payee    string `json:"payee"`
	Node     string `json:"node"`
}

func (f *Filter) match(r *Record) bool {
	if f.Type != "" && r.Type != f.Type {
		return false
	}
	if f.Peer == "" && f.Task == "" {
		return true
	}
	var p parties
	_ = json.Unmarshal(r.Payload, &p)
	if f.Task != "" && p.TaskID != f.Task {
		return false
	}
	if f.Peer != "" {
		for _, s := range []string{p.Author, p.Broker, p.Provider, p.Payer, p.Payee, p.Node} {
			if s == f.Peer {
				return true
			}
		}
		for _, s := range r.Signatures {
			if s.Signer == f.Peer {
				return true
			}
		}
		return false
	}
	return true
}

// Entries returns records in index order. Local reads by default; with
// f.Consistent the read happens on the leader after a raft barrier, so it
// sees every entry committed before the call (forwarded when not leader).
func (l *Ledger) Entries(ctx context.Context, f Filter) ([]Record, error) {
	return l.entries(ctx, f, 0)
}

func (l *Ledger) entries(ctx context.Context, f Filter, hops int) ([]Record, error) {
	if f.Consistent {
		if !l.IsLeader() {
			target := l.forwardTarget()
			if target == "" || hops >= maxHops {
				return nil, fmt.Errorf("consistent read: %w", ErrNotLeader)
			}
			resp, err := l.call(ctx, target, request{Op: opEntries, Filter: &f, Hops: hops + 1})
			if err != nil {
				return nil, err
			}
			return resp.Records, nil
		}
		if err := l.barrier(ctx); err != nil {
			return nil, err
		}
	} else if l.Role() == RoleClient && hops < maxHops {
		if target := l.forwardTarget(); target != "" {
			resp, err := l.call(ctx, target, request{Op: opEntries, Filter: &f, Hops: hops + 1})
			if err != nil {
				return nil, err
			}
			return resp.Records, nil
		}
	}
	return readRecords(l.fsmDB, f)
}

// barrier confirms leadership and waits until the local FSM applied every
// entry committed before it.
func (l *Ledger) barrier(ctx context.Context) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if err := l.raft.Barrier(timeout).Error(); err != nil {
		return l.raftErr("consistent read barrier", err)
	}
	return nil
}

func readRecords(db *badger.DB, f Filter) ([]Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	out := []Record{}
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRecord
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(recordKey(max(f.From, 1))); it.Valid() && len(out) < limit; it.Next() {
			var r Record
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("record %d does not decode: %w", binary.BigEndian.Uint64(it.Item().Key()[len(prefixRecord):]), err)
			}
			if f.match(&r) {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// Entry returns the record with index key (decimal) or, failing that, the
// record whose id is key (of any type). Local read.
func (l *Ledger) Entry(ctx context.Context, key string) (Record, error) {
	var rec Record
	err := l.fsmDB.View(func(txn *badger.Txn) error {
		if idx, err := strconv.ParseUint(key, 10, 64); err == nil {
			if rec, err = getRecord(txn, idx); !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		w := &writer{txn: txn}
		for _, t := range Types() {
			idx, ok, err := w.getIndex(idKey(t, key))
			if err != nil {
				return err
			}
			if ok {
				rec, err = getRecord(txn, idx)
				return err
			}
		}
		return fmt.Errorf("ledger entry %q (index or id): %w", key, ErrNotFound)
	})
	return rec, err
}

// Balances returns every peer's balance in micros; they sum to zero.
func (l *Ledger) Balances() map[string]int64 {
	out := map[string]int64{}
	_ = l.fsmDB.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixBalance
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			peer := string(it.Item().Key()[len(prefixBalance):])
			_ = it.Item().Value(func(v []byte) error {
				if len(v) == 8 {
					out[peer] = int64(binary.BigEndian.Uint64(v))
				}
				return nil
			})
		}
		return nil
	})
	return out
}

// LatestAgreement returns the agreement with the highest attempt for a task
// (fencing: a provider runs a task only under its latest agreement).
func (l *Ledger) LatestAgreement(taskID string) (Agreement, bool) {
	var a Agreement
	var ok bool
	_ = l.fsmDB.View(func(txn *badger.Txn) error {
		var err error
		a, ok, err = latestAgreement(txn, taskID)
		return err
	})
	return a, ok
}
