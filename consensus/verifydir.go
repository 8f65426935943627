package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
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

// boundedDo runs f, giving up after d and turning a panic into an error;
// f keeps running in the background when it does not return (Badger
// offers no way to interrupt it).
func boundedDo[T any](d time.Duration, what string, f func() (T, error)) (T, error) {
	type out struct {
		v   T
		err error
	}
	ch := make(chan out, 1)
	go func() {
		var o out
		defer func() {
			// bbolt panics on some corrupt pages: an error, not a crash.
			if r := recover(); r != nil {
				o.err = fmt.Errorf("%s failed (%v); its files are likely corrupt: restore the data dir from a replica (stop the agent, move the ledger dir aside, start it again to re-join)", what, r)
			}
			ch <- o
		}()
		o.v, o.err = f()
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

// verifyLogStore reads every raft log in dir/LogDir and checks that each
// reads back with its own index, that indexes are contiguous, and that
// the log reaches applied, the last raft index the state database has
// applied (or a snapshot covers it): the log is synced before anything is
// applied, so a log that ends earlier lost its tail (a segment's frame
// failed its checksum when the log was opened). It names the first bad
// index. Opening the log recovers a torn tail as an agent's start would.
func verifyLogStore(dir string, applied uint64) error {
	path := filepath.Join(dir, LogDir)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, legacyLogDir)); err == nil {
			return verifyLegacyRaftStore(dir)
		}
		return fmt.Errorf("no raft log in %s (expected %s)", dir, path)
	}
	w, err := boundedDo(offlineOpenTimeout, "opening "+path, func() (walStore, error) {
		return openWAL(path, slog.New(slog.DiscardHandler))
	})
	if err != nil {
		return err
	}
	defer func() {
		_, _ = boundedDo(offlineCloseTimeout, "closing "+path, func() (struct{}, error) { return struct{}{}, w.Close() })
	}()
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	_, err = boundedDo(offlineOpenTimeout, "reading "+path, func() (struct{}, error) {
		var l raft.Log
		for i := first; first > 0 && i <= last; i++ {
			if err := w.GetLog(i, &l); err != nil {
				return struct{}{}, fmt.Errorf("raft log %s: log %d cannot be read: %w", path, i, err)
			}
			if l.Index != i {
				return struct{}{}, fmt.Errorf("raft log %s: log stored at %d says index %d", path, i, l.Index)
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return err
	}
	if applied > last {
		snap, err := latestSnapshotIndex(dir)
		if err != nil {
			return err
		}
		if applied > snap {
			return fmt.Errorf("raft log %s ends at %d (snapshot at %d) but the state has applied log %d: the log lost its tail (corrupt segment); restore the data dir from a replica (stop the agent, move the ledger dir aside, start it again to re-join)", path, last, snap, applied)
		}
	}
	return nil
}

// latestSnapshotIndex is the raft index of the newest snapshot in dir, 0
// when there is none.
func latestSnapshotIndex(dir string) (uint64, error) {
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return 0, fmt.Errorf("open ledger snapshots in %s: %w", dir, err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return 0, err
	}
	return list[0].Index, nil
}

// verifyLegacyRaftStore checks an earlier version's Badger raft store
// (moved into the log at the agent's next start) like verifyLogStore.
func verifyLegacyRaftStore(dir string) error {
	path := filepath.Join(dir, legacyLogDir)
	db, err := openReadOnlyBounded(dir, legacyLogDir)
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
