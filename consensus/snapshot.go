package consensus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// snapshotMagic starts every FSM snapshot. The rest is a sequence of
// uvarint-length-prefixed key and value pairs: every FSM key (fsmPrefixes)
// of the database, in key order.
const snapshotMagic = "pcm-ledger-snapshot/1\n"

// Snapshot captures the FSM database as of now (a Badger read transaction)
// and lets raft persist it concurrently with later applies.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{txn: f.db.NewTransaction(false)}, nil
}

type fsmSnapshot struct{ txn *badger.Txn }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	err := writeSnapshot(s.txn, w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist ledger snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.txn.Discard() }

func writeSnapshot(txn *badger.Txn, w io.Writer) error {
	if _, err := io.WriteString(w, snapshotMagic); err != nil {
		return err
	}
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
	defer it.Close()
	var n [binary.MaxVarintLen64]byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if !isFSMKey(item.Key()) {
			continue
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{item.Key(), v} {
			if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Restore replaces the FSM's keys with a snapshot's (the raft store and
// the agent's keys in the same database stay); a snapshot holding any
// other key is refused.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.agrs.Clear()
	if err := f.db.DropPrefix(fsmPrefixes...); err != nil {
		return fmt.Errorf("restore ledger snapshot: clear state: %w", err)
	}
	r := bufio.NewReaderSize(rc, 1<<16)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("restore ledger snapshot: not a pcm ledger snapshot")
	}
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	for {
		k, err := readChunk(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("restore ledger snapshot: %w", err)
		}
		v, err := readChunk(r)
		if err != nil {
			return fmt.Errorf("restore ledger snapshot: truncated after key %q: %w", k, err)
		}
		if !isFSMKey(k) {
			return fmt.Errorf("restore ledger snapshot: key %q is not ledger state", k)
		}
		if err := wb.Set(k, v); err != nil {
			return fmt.Errorf("restore ledger snapshot: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("restore ledger snapshot: %w", err)
	}
	h, err := readHead(f.db)
	if err != nil {
		return err
	}
	f.setHead(h)
	return nil
}

func readChunk(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > 64<<20 {
		return nil, fmt.Errorf("chunk of %d bytes is too large", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	return b, nil
}
