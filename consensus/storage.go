package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// StoreDir is the agent's state database under Config.Dir: the applied
// ledger state (the FSM's keys) and whatever the caller keeps beside it
// under its own prefix (the agent's task records, "task/"). Raft's log
// and stable store keep a database of their own, raft/, with synchronous
// writes; this one is written without (the FSM is rebuilt from raft's
// snapshot and log after a crash, and the caller syncs what must be
// durable with DB.Sync), so its readers never wait for an fsync.
const StoreDir = "fsm"

// OpenDB opens (or creates) the agent's state database in dir/StoreDir.
// The caller closes it, after the Ledger and everything else that uses it.
func OpenDB(dir string, logger *slog.Logger) (*badger.DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, StoreDir)
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create ledger dir: %w", err)
	}
	return openBadger(path, false, logger.With("db", "state"))
}

// openBadger opens a Badger database sized for one agent's work (the raft
// store and the state database, each): a few thousand small keys, written
// in small transactions, read by key. Badger's
// defaults (64 MiB memtables, a 256 MiB block cache) are sized for a
// server's working set; here they were nine tenths of an idle agent's heap
// and gigabytes for a hundred agents in one test process.
//
//   - 1 MiB memtables (a 1.3 MiB arena each, one live and at most one
//     waiting to flush): a transaction holds at most 15 % of it (150 KiB,
//     about 1,600 keys; values over 1 KiB, such as raft logs and ledger
//     records, go to the value log and count 12 bytes), and the stores
//     split larger batches themselves. The arena was still 43 % of the
//     heap of 100 agents in one process at 2 MiB.
//   - No block cache and no compression: tables are memory-mapped, reads
//     are point lookups and short scans of recent keys, and ristretto's
//     caches cost a megabyte each before they hold anything.
//   - No index cache: table indexes stay in memory, which for a database
//     of this size is kilobytes.
//   - 16 MiB value log files: fewer bytes preallocated on a small disk.
//   - Values up to 1 KiB in the tree, larger ones in the value log; in the
//     synced raft store, up to 64 KiB (a raft log of a batch of up to
//     about 45 entries): a synced commit of a value in the value log costs
//     two syncs (value log, then the memtable's WAL, an msync of a mapped
//     file), of one in the tree one. One-log appends took 2.9 ms instead
//     of 3.8 ms (loaded machine), and a commit waits for one on the leader
//     and one on a follower. Values already in the value log stay
//     readable: the threshold only decides where new writes go.
func openBadger(dir string, sync bool, logger *slog.Logger) (*badger.DB, error) {
	threshold := int64(1 << 10)
	if sync {
		threshold = 64 << 10 // at most 15 % of a memtable (157 KiB), Badger's limit
	}
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(sync).
		WithLogger(badgerLogger{logger}).
		WithMemTableSize(1 << 20).
		WithNumMemtables(2).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithCompression(options.None).
		WithNumCompactors(2).
		WithValueThreshold(threshold)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger database in %s (is another agent using this data dir?): %w", dir, err)
	}
	return db, nil
}

// MoveInto moves a Badger database of the earlier layout, in oldDir, into
// db: it copies every key under a prefix of rename (with the prefix
// replaced by its value; other keys are dropped), syncs db, then renames
// oldDir away and removes it, so a crash at any point leaves either the
// old database (moved again at the next start) or its keys in db. It
// returns the keys copied, or -1 when oldDir does not exist.
func MoveInto(db *badger.DB, oldDir string, rename map[string]string) (int, error) {
	if _, err := os.Stat(oldDir); errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	src, err := openBadger(oldDir, false, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	n, err := copyPrefixed(src, db, rename)
	if cerr := src.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		err = db.Sync()
	}
	if err != nil {
		return n, err
	}
	moved := oldDir + ".moved"
	if err := os.RemoveAll(moved); err != nil {
		return n, err
	}
	if err := os.Rename(oldDir, moved); err != nil {
		return n, err
	}
	return n, os.RemoveAll(moved)
}

// copyPrefixed copies every key of src under a prefix of rename into dst,
// with that prefix replaced by its value. It returns the keys copied.
func copyPrefixed(src, dst *badger.DB, rename map[string]string) (int, error) {
	wb := dst.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := src.View(func(txn *badger.Txn) error {
		for from, to := range rename {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(from), PrefetchValues: true, PrefetchSize: 64})
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				v, err := item.ValueCopy(nil)
				if err != nil {
					it.Close()
					return fmt.Errorf("read %q: %w", item.Key(), err)
				}
				k := append([]byte(to), item.Key()[len(from):]...)
				if err := wb.Set(k, v); err != nil {
					it.Close()
					return fmt.Errorf("write %q: %w", k, err)
				}
				n++
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := wb.Flush(); err != nil {
		return n, fmt.Errorf("flush copied keys: %w", err)
	}
	return n, nil
}
