package consensus

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// VerifyReport is the outcome of recomputing a ledger's chain.
type VerifyReport struct {
	OK       bool   `json:"ok"`
	Entries  uint64 `json:"entries"`
	Head     string `json:"head"`
	FirstBad uint64 `json:"first_bad,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// Verify recomputes the live ledger's chain and every signature.
func (l *Ledger) Verify(progress func(done, total uint64)) (VerifyReport, error) {
	return verifyDB(l.fsmDB, l.cfg.Verifier, progress)
}

// VerifyDir verifies the ledger stored in dir (<data-dir>/ledger) offline:
// every record's index, link, hash, schema and signatures, then the head.
// The agent using dir must be stopped (Badger locks the directory).
//
// Every step is bounded (a corrupt store may block Badger itself), the raft
// log is checked too (each log reads back with its own index, indexes
// contiguous, and it reaches what the state has applied), and errors name
// the store and the index.
func VerifyDir(dir string, v Verifier, progress func(done, total uint64)) (VerifyReport, error) {
	db, err := openReadOnly(dir)
	if err != nil {
		return VerifyReport{}, err
	}
	rep, err := verifyDB(db, v, progress)
	var h head
	if err == nil {
		h, err = readHead(db)
	}
	if cerr := closeBounded(db, filepath.Join(dir, "fsm")); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return rep, err
	}
	if rerr := verifyLogStore(dir, h.RaftIndex); rerr != nil {
		return rep, rerr
	}
	return rep, nil
}

// ExportDir writes every record of the ledger in dir as JSON lines.
func ExportDir(dir string, w io.Writer) error {
	db, err := openReadOnly(dir)
	if err != nil {
		return err
	}
	defer func() { _ = closeBounded(db, filepath.Join(dir, "fsm")) }()
	return exportDB(db, w)
}

// Export writes every record of the live ledger as JSON lines.
func (l *Ledger) Export(w io.Writer) error { return exportDB(l.fsmDB, w) }

func openReadOnly(dir string) (*badger.DB, error) {
	path := filepath.Join(dir, "fsm")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no ledger in %s (expected %s): %w", dir, path, err)
	}
	return openReadOnlyBounded(dir, "fsm")
}

func exportDB(db *badger.DB, w io.Writer) error {
	return db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRecord
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if _, err := w.Write(v); err != nil {
					return err
				}
				_, err := w.Write([]byte{'\n'})
				return err
			})
			if err != nil {
				return fmt.Errorf("export ledger: %w", err)
			}
		}
		return nil
	})
}

// verifyDB walks the records in index order. Signatures are checked in
// parallel per window; links and hashes sequentially.
func verifyDB(db *badger.DB, v Verifier, progress func(done, total uint64)) (VerifyReport, error) {
	h, err := readHead(db)
	if err != nil {
		return VerifyReport{}, err
	}
	rep := VerifyReport{Head: GenesisHash}
	fail := func(index uint64, format string, a ...any) (VerifyReport, error) {
		rep.OK, rep.FirstBad, rep.Reason = false, index, fmt.Sprintf(format, a...)
		return rep, nil
	}
	const window = 512
	type item struct {
		key  []byte
		rec  Record
		derr error
		verr error
	}
	var batch []item
	prev := GenesisHash
	var next uint64 = 1
	check := func() (bool, error) {
		defer func() {
			if progress != nil {
				progress(rep.Entries, h.Index)
			}
		}()
		var wg sync.WaitGroup
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(batch); i += workers {
					if batch[i].derr == nil {
						batch[i].verr = batch[i].rec.Validate(v)
					}
					if batch[i].verr == nil && batch[i].derr == nil {
						batch[i].verr = checkRecordTime(&batch[i].rec)
					}
				}
			}()
		}
		wg.Wait()
		for _, it := range batch {
			idx := binary.BigEndian.Uint64(it.key[len(prefixRecord):])
			r := it.rec
			switch {
			case idx != next:
				_, err := fail(next, "record %d is missing (next stored record is %d)", next, idx)
				return false, err
			case it.derr != nil:
				_, err := fail(idx, "record does not decode: %v", it.derr)
				return false, err
			case r.Index != idx:
				_, err := fail(idx, "record stored at index %d says index %d", idx, r.Index)
				return false, err
			case r.PrevHash != prev:
				_, err := fail(idx, "prev_hash %s does not match the previous record's hash %s", r.PrevHash, prev)
				return false, err
			case ChainHash(prev, idx, &r.Entry) != r.Hash:
				_, err := fail(idx, "hash %s does not match the recomputed hash %s (record altered)", r.Hash, ChainHash(prev, idx, &r.Entry))
				return false, err
			case it.verr != nil:
				_, err := fail(idx, "%v", it.verr)
				return false, err
			}
			prev, next = r.Hash, idx+1
			rep.Entries, rep.Head = idx, r.Hash
		}
		batch = batch[:0]
		return true, nil
	}
	ok := true
	err = db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefixRecord
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var x item
			x.key = it.Item().KeyCopy(nil)
			x.derr = it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &x.rec) })
			batch = append(batch, x)
			if len(batch) == window {
				if ok, err = check(); !ok || err != nil {
					return err
				}
			}
		}
		if len(batch) > 0 {
			ok, err = check()
		}
		return err
	})
	if err != nil {
		return rep, fmt.Errorf("verify ledger: %w", err)
	}
	if !ok {
		return rep, nil
	}
	if rep.Entries != h.Index || rep.Head != h.Hash {
		return fail(rep.Entries+1, "stored head is index %d hash %s but the chain ends at %d hash %s", h.Index, h.Hash, rep.Entries, rep.Head)
	}
	rep.OK = true
	return rep, nil
}

// checkRecordTime: a record's time is its signed payload's time (the
// payload is inside the hash), so a record whose time was changed on disk
// is caught here.
func checkRecordTime(r *Record) error {
	p, err := decodePayload(r.Type, r.Payload)
	if err != nil {
		return err
	}
	if !p.when().Equal(r.Time) {
		return fmt.Errorf("record time %s differs from the time %s in its signed payload (record altered)", r.Time.Format(time.RFC3339Nano), p.when().Format(time.RFC3339Nano))
	}
	return nil
}
