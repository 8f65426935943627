package consensus

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
)

// ForgeHistory rewrites a stopped replica's FSM under dir (Config.Dir) the
// way an attacker with disk access would, for tests of fork detection: the
// record at index gets entry instead (validly signed by its author) and
// every later record is re-chained, so the replica's own Verify still
// passes while its chain differs from every other replica's from index on.
func ForgeHistory(dir string, index uint64, entry Entry) error {
	db, err := openBadger(filepath.Join(dir, "fsm"), true, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(txn *badger.Txn) error {
		h, err := readHeadTxn(txn)
		if err != nil {
			return err
		}
		if index < 1 || index > h.Index {
			return fmt.Errorf("forge: index %d is outside 1..%d", index, h.Index)
		}
		prev := GenesisHash
		if index > 1 {
			r, err := getRecord(txn, index-1)
			if err != nil {
				return err
			}
			prev = r.Hash
		}
		for i := index; i <= h.Index; i++ {
			r, err := getRecord(txn, i)
			if err != nil {
				return err
			}
			if i == index {
				r.Entry = entry
				if p, err := decodePayload(entry.Type, entry.Payload); err == nil {
					r.Time = p.when()
				}
			}
			r.PrevHash = prev
			r.Hash = ChainHash(prev, i, &r.Entry)
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := txn.Set(recordKey(i), b); err != nil {
				return err
			}
			prev = r.Hash
		}
		h.Hash = prev
		b, _ := json.Marshal(h)
		return txn.Set(keyHead, b)
	})
}

func readHeadTxn(txn *badger.Txn) (head, error) {
	h := head{Hash: GenesisHash}
	item, err := txn.Get(keyHead)
	if err != nil {
		return h, fmt.Errorf("read ledger head: %w", err)
	}
	return h, item.Value(func(v []byte) error { return json.Unmarshal(v, &h) })
}
