package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/raft"
)

// Bounds of an offline check: Badger can block opening or closing a
// store whose files are corrupt; a check must answer, never hang.
const (
	offlineOpenTimeout  = 20 * time.Second
	offlineCloseTimeout = 5 * time.Second
)

// ErrStuck: a store did not open or close in time (likely corrupt files).
var ErrStuck = errors.New("consensus: the store did not answer in time")

// bounded runs f, giving up after d; f keeps running in the background
// when it does not return (Badger offers no way to interrupt it).
func boundedDo[T any](d time.Duration, what string, f func() (T, error)) (T, error) {
	type out struct {
		v   T
		err error
	}
	ch := make(chan out, 1)
	go func() {
		v, err := f()
		ch <- out{v, err}
	}()
	select {
	case o := <-ch:
		return o.v, o.err
	case <-time.After(d):
		var zero T
		return zero, fmt.Errorf("%s did not finish within %s: %w; its files are likely corrupt: restore the data dir from a replica (stop the agent, move the ledger dir aside, start it again to re-join)", what, d, ErrStuck)
	}
}

func openReadOnlyBounded(dir, sub string) (*badger.DB, error) {
	path := filepath.Join(dir, sub)
	return boundedDo(offlineOpenTimeout, "opening "+path, func() (*badger.DB, error) {
		// Every block's checksum is checked as it is read (not at table open:
		// badger v4.9.6 panics on some corrupt tables there), so a flipped byte in a table is an error.
		opts := badger.DefaultOptions(path).WithReadOnly(true).WithLogger(nil).
			WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20).
			WithChecksumVerificationMode(options.OnBlockRead)
		db, err := badger.Open(opts)
		if err != nil {
			return nil, fmt.Errorf("open %s read-only (is an agent still using it? stop it, or verify through its API): %w", path, err)
		}
		return db, nil
	})
}

func closeBounded(db *badger.DB, path string) error {
	_, err := boundedDo(offlineCloseTimeout, "closing "+path, func() (struct{}, error) { return struct{}{}, db.Close() })
	return err
}

// verifyRaftStore reads every raft log in dir/raft and checks that each
// decodes and that indexes are contiguous; it names the first bad index.
func verifyRaftStore(dir string) error {
	path := filepath.Join(dir, "raft")
	db, err := openReadOnlyBounded(dir, "raft")
	if err != nil {
		return err
	}
	defer func() { _ = closeBounded(db, path) }()
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixLog, PrefetchValues: true})
		defer it.Close()
		var prev uint64
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefixLog)+8 {
				return fmt.Errorf("raft log store %s: a key of %d bytes is malformed", path, len(k))
			}
			idx := binary.BigEndian.Uint64(k[len(prefixLog):])
			if prev != 0 && idx != prev+1 {
				return fmt.Errorf("raft log store %s: log %d follows log %d (gap)", path, idx, prev)
			}
			var l raft.Log
			if err := it.Item().Value(func(v []byte) error { return decodeLog(v, &l) }); err != nil {
				return fmt.Errorf("raft log store %s: log %d does not decode: %w", path, idx, err)
			}
			if l.Index != idx {
				return fmt.Errorf("raft log store %s: log stored at %d says index %d", path, idx, l.Index)
			}
			prev = idx
		}
		// Badger ends an iteration quietly at a block it cannot read: the
		// last log read backwards must be the last one read forwards.
		rit := txn.NewIterator(badger.IteratorOptions{Prefix: prefixLog, Reverse: true})
		defer rit.Close()
		rit.Seek(append(append([]byte{}, prefixLog...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if rit.Valid() {
			if last := binary.BigEndian.Uint64(rit.Item().Key()[len(prefixLog):]); last != prev {
				return fmt.Errorf("raft log store %s: logs after %d cannot be read (the store holds logs up to %d): a table is corrupt", path, prev, last)
			}
		}
		return nil
	})
}
