package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// LogDir is the ledger's raft log and stable store under Config.Dir:
// hashicorp's raft-wal, an append-only log of segment files built for
// raft (each append is one write and one fsync of the tail segment; no
// tree, no memtable), with raft's stable keys in a small bbolt file
// beside it. It replaced a Badger database (legacyLogDir), whose synced
// commit was a value-log sync plus an msync of its mapped memtable log:
// 35 % faster appends, 55 % more ledger commits per second at one
// proposer (BenchmarkCommit), and one database fewer per agent.
const LogDir = "wal"

// legacyLogDir is the Badger raft store of earlier versions; Open moves
// its logs and stable keys into LogDir once, then removes it.
const legacyLogDir = "raft"

// walSegmentSize is the size of one log segment file (preallocated when
// the segment starts; a segment wholly below a snapshot's trailing logs
// is deleted): small enough for a small disk and a hundred agents in one
// test, large enough that rotations (a new file and a metadata commit)
// are rare — a few thousand batches each.
const walSegmentSize = 4 << 20

// logStore is raft's log and stable store.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

var _ logStore = walStore{}

// openLogStore opens (or creates) the raft log in dir/LogDir, first moving
// the logs of an earlier version's Badger store into it.
func openLogStore(dir string, logger *slog.Logger) (logStore, error) {
	path := filepath.Join(dir, LogDir)
	if err := moveLegacyLog(dir, logger); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("create ledger log dir: %w", err)
	}
	return openWAL(path, logger)
}

// walStore is the write-ahead log, each log sealed with a checksum
// (walsum.go).
type walStore struct{ *wal.WAL }

func openWAL(path string, logger *slog.Logger) (walStore, error) {
	if err := walNotInUse(path); err != nil {
		return walStore{}, err
	}
	w, err := wal.Open(path, wal.WithSegmentSize(walSegmentSize), wal.WithLogger(newHCLogger(logger)))
	if err != nil {
		return walStore{}, fmt.Errorf("open ledger log in %s: %w", path, err)
	}
	return walStore{w}, nil
}

// walNotInUse fails when another process holds the log's metadata file
// (bbolt would wait for it forever).
func walNotInUse(path string) error {
	f, err := os.OpenFile(filepath.Join(path, metadb.FileName), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open ledger log metadata: %w", err)
	}
	defer func() { _ = f.Close() }()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("ledger log %s is in use (is another agent using this data dir? stop it first): %w", path, err)
	}
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// moveLegacyLog copies the logs and stable keys of dir/legacyLogDir (an
// earlier version's Badger store) into a new log in dir/LogDir.new,
// renames that to dir/LogDir, then removes the old store: a crash at any
// point leaves either the old store (moved again at the next start) or
// the complete new log.
func moveLegacyLog(dir string, logger *slog.Logger) error {
	legacy, path := filepath.Join(dir, legacyLogDir), filepath.Join(dir, LogDir)
	if _, err := os.Stat(legacy); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(path); err == nil { // moved; the crash came before the removal
		return os.RemoveAll(legacy)
	}
	old, err := OpenStore(legacy, logger)
	if err != nil {
		return fmt.Errorf("open the earlier raft store to move it: %w", err)
	}
	defer func() { _ = old.Close() }()
	tmp := path + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("create ledger log dir: %w", err)
	}
	w, err := openWAL(tmp, logger)
	if err != nil {
		return err
	}
	n, err := copyLog(old, w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("move raft logs from %s into %s: %w", legacy, path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	_ = old.Close()
	logger.Info("moved the raft log into the write-ahead log", "logs", n, "from", legacy, "to", path)
	return os.RemoveAll(legacy)
}

// copyLog copies every log and stable key of src into dst.
func copyLog(src *Store, dst logStore) (int, error) {
	stable, err := src.stable()
	if err != nil {
		return 0, err
	}
	for k, v := range stable {
		if err := dst.Set([]byte(k), v); err != nil {
			return 0, fmt.Errorf("stable key %q: %w", k, err)
		}
	}
	first, _ := src.FirstIndex()
	last, _ := src.LastIndex()
	n := 0
	batch := make([]*raft.Log, 0, 256)
	for i := first; first > 0 && i <= last; i++ {
		l := new(raft.Log)
		if err := src.GetLog(i, l); err != nil {
			return n, fmt.Errorf("read raft log %d: %w", i, err)
		}
		batch = append(batch, l)
		if len(batch) == cap(batch) || i == last {
			if err := dst.StoreLogs(batch); err != nil {
				return n, fmt.Errorf("write raft logs up to %d: %w", i, err)
			}
			n += len(batch)
			batch = batch[:0]
		}
	}
	return n, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
