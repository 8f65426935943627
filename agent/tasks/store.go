package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pcm-mesh/pcm/agent/internal/group"
	"github.com/pcm-mesh/pcm/consensus"
)

// Store keeps broker task records under "task/" in the agent's state
// database (consensus.OpenDB), beside the ledger's state. A durable put (a
// submission, a placement, an outcome: what acknowledges something) is
// written and synced before it returns, together with every other record
// waiting then: the durable puts of concurrent submissions and rounds
// share one write batch and one sync (group commit), where each used to
// be a write of its own, serialized, then a sync. Intermediate states
// (negotiating and back, round details), which a restarted broker
// re-derives, are kept in memory and written every pendingFlush, or with
// the next durable put, unsynced. Reads see the pending records.
type Store struct {
	db     *badger.DB
	synced group.Group // durable puts share one write and one sync (group commit)

	wmu sync.Mutex // serializes writes, so a pending record never overwrites a later one

	mu      sync.Mutex
	pending map[string][]byte // task id → its latest record not yet written

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	log      *slog.Logger
}

var taskPrefix = []byte("task/")

// pendingFlush is how long an intermediate task state may wait in memory.
const pendingFlush = 200 * time.Millisecond

// OpenStore keeps task records in db, first moving the records of a
// task store of the earlier layout (its own Badger database in oldDir)
// into it. The database's owner closes db, after close.
func OpenStore(db *badger.DB, oldDir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if oldDir != "" {
		n, err := consensus.MoveInto(db, oldDir, map[string]string{string(taskPrefix): string(taskPrefix)})
		if err != nil {
			return nil, fmt.Errorf("move the task store %s into the agent's state database %s (data dir layout before the task store joined it): %w; "+
				"to start without the tasks this agent brokered, stop it and move %s aside", oldDir, db.Opts().Dir, err, oldDir)
		}
		if n >= 0 {
			log.Info("moved the task store into the agent's state database", "from", oldDir, "tasks", n)
		}
	}
	s := &Store{db: db, pending: map[string][]byte{}, stop: make(chan struct{}), done: make(chan struct{}), log: log}
	s.synced.Fn = func() error {
		if err := s.write(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return db.Sync()
	}
	go s.flushLoop()
	return s, nil
}

func taskKey(id string) []byte { return append(append([]byte{}, taskPrefix...), id...) }

func (s *Store) Put(t *Task, durable bool) error {
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", t.ID, err)
	}
	s.mu.Lock()
	s.pending[t.ID] = b
	s.mu.Unlock()
	if !durable {
		return nil
	}
	// A group write that starts after this point takes the record along.
	if err := s.synced.Do(); err != nil {
		return fmt.Errorf("store task %s: %w", t.ID, err)
	}
	return nil
}

// write writes the pending records in one batch. Records it could not
// write stay pending (unless a later one replaced them) for the next try.
func (s *Store) write() (err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	batch := s.pending
	s.pending = map[string][]byte{}
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	defer func() {
		if err == nil {
			return
		}
		s.mu.Lock()
		for id, b := range batch {
			if _, newer := s.pending[id]; !newer {
				s.pending[id] = b
			}
		}
		s.mu.Unlock()
	}()
	// A ledger snapshot being restored into the database (the FSM's
	// keys are dropped first) blocks its writes for a moment: wait it out.
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		if err = s.writeBatch(batch); !errors.Is(err, badger.ErrBlockedWrites) || wait > 5*time.Second {
			return err
		}
		time.Sleep(wait)
	}
}

func (s *Store) writeBatch(batch map[string][]byte) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for k, v := range batch {
		if err := wb.Set(taskKey(k), v); err != nil {
			return err
		}
	}
	return wb.Flush()
}

func (s *Store) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(pendingFlush)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.write(); err != nil {
				s.log.Warn("write task states", "err", err)
			}
		}
	}
}

func (s *Store) pendingRecord(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.pending[id]
	return b, ok
}

func (s *Store) Get(id string) (*Task, error) {
	var t Task
	if b, ok := s.pendingRecord(id); ok {
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("read task %s: %w", id, err)
		}
		return &t, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(taskKey(id))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &t) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read task %s: %w", id, err)
	}
	return &t, nil
}

// all reads every task record (pending ones included).
func (s *Store) All() ([]*Task, error) {
	if err := s.write(); err != nil {
		return nil, fmt.Errorf("write task states: %w", err)
	}
	var out []*Task
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: taskPrefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var t Task
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &t) }); err != nil {
				return err
			}
			out = append(out, &t)
		}
		return nil
	})
	return out, err
}

// close writes the pending records and stops; it leaves the database to
// its owner (the agent closes it after the ledger and every loop that
// writes tasks). It is idempotent.
func (s *Store) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.write()
}
