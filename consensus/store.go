package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Key prefixes of the raft store.
var (
	prefixLog    = []byte("l/")
	prefixStable = []byte("s/")
)

// Store is raft's LogStore and StableStore on one Badger database with
// synchronous writes: a log entry or term that raft was told is stored
// survives a crash. It was the ledger's raft store before the
// write-ahead log (LogDir); Open now reads it only to move an earlier
// version's logs into that log (moveLegacyLog).
type Store struct {
	db *badger.DB

	mu          sync.Mutex // guards first and last
	first, last uint64
	closeOnce   sync.Once
	closeErr    error
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// OpenStore opens (or creates) a raft store in dir.
func OpenStore(dir string, logger *slog.Logger) (*Store, error) {
	db, err := openBadger(dir, true, logger)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db}
	if err := s.loadBounds(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func logKey(index uint64) []byte {
	k := make([]byte, len(prefixLog)+8)
	copy(k, prefixLog)
	binary.BigEndian.PutUint64(k[len(prefixLog):], index)
	return k
}

func (s *Store) loadBounds() error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefixLog
		it := txn.NewIterator(opts)
		it.Rewind()
		if it.Valid() {
			s.first = binary.BigEndian.Uint64(it.Item().Key()[len(prefixLog):])
		}
		it.Close()
		opts.Reverse = true
		it = txn.NewIterator(opts)
		defer it.Close()
		it.Seek(logKey(^uint64(0)))
		if it.Valid() {
			s.last = binary.BigEndian.Uint64(it.Item().Key()[len(prefixLog):])
		}
		return nil
	})
}

// FirstIndex returns the first stored log index, 0 when empty.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex returns the last stored log index, 0 when empty.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog reads the log at index into out.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(logKey(index))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return fmt.Errorf("get raft log %d: %w", index, err)
		}
		return item.Value(func(v []byte) error { return decodeLog(v, out) })
	})
}

// StoreLog stores one log.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores logs in as few synced transactions as Badger allows.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, l := range logs {
		k, v := logKey(l.Index), encodeLog(l)
		err := txn.Set(k, v)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err != nil {
				return fmt.Errorf("store raft logs: %w", err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.Set(k, v)
		}
		if err != nil {
			return fmt.Errorf("store raft log %d: %w", l.Index, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("store raft logs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == 0 || logs[0].Index < s.first {
		s.first = logs[0].Index
	}
	if last := logs[len(logs)-1].Index; last > s.last {
		s.last = last
	}
	return nil
}

// DeleteRange deletes the logs from min to max inclusive.
func (s *Store) DeleteRange(min, max uint64) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for i := min; i <= max && i >= min; i++ {
		err := txn.Delete(logKey(i))
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err != nil {
				return fmt.Errorf("delete raft logs: %w", err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete(logKey(i))
		}
		if err != nil {
			return fmt.Errorf("delete raft log %d: %w", i, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("delete raft logs %d..%d: %w", min, max, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadBoundsLocked()
}

func (s *Store) loadBoundsLocked() error {
	s.first, s.last = 0, 0
	return s.loadBounds()
}

// Set stores a stable key.
func (s *Store) Set(key, val []byte) error {
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte{}, prefixStable...), key...), val)
	})
}

// Get reads a stable key; ErrKeyNotFound if missing.
func (s *Store) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(append(append([]byte{}, prefixStable...), key...))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrKeyNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// stable returns every stable key and its value.
func (s *Store) stable() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixStable, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefixStable):])] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stable keys: %w", err)
	}
	return out, nil
}

// SetUint64 stores a stable integer.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 reads a stable integer; ErrKeyNotFound if missing.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stable key %q holds %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close closes the database; it is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

// encodeLog is a compact binary encoding of a raft log:
// index, term (8 bytes each), type (1), appended-at unix nanos (8),
// then uvarint-length-prefixed data and extensions.
func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, 25+len(l.Data)+len(l.Extensions)+2*binary.MaxVarintLen64)
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

func decodeLog(b []byte, l *raft.Log) error {
	bad := fmt.Errorf("raft log record is corrupt (%d bytes)", len(b))
	if len(b) < 25 {
		return bad
	}
	l.Index = binary.BigEndian.Uint64(b)
	l.Term = binary.BigEndian.Uint64(b[8:])
	l.Type = raft.LogType(b[16])
	l.AppendedAt = time.Time{}
	if at := int64(binary.BigEndian.Uint64(b[17:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	rest := b[25:]
	var err error
	if l.Data, rest, err = readBytes(rest); err != nil {
		return bad
	}
	if l.Extensions, _, err = readBytes(rest); err != nil {
		return bad
	}
	return nil
}

// readBytes reads one uvarint-length-prefixed byte string (copied).
func readBytes(b []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errors.New("short buffer")
	}
	if n == 0 {
		return nil, b[k:], nil
	}
	return append([]byte(nil), b[k:k+int(n)]...), b[k+int(n):], nil
}

// badgerLogger routes Badger's logs to slog at debug level (warnings and
// errors keep their level).
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(fmt.Sprintf(f, a...)) }
