package consensus

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// TestOpenDBMovesTheOldRaftStore: a data dir of the layout before one
// database per agent (raft/ a database of its own, keys l/ and s/) opens,
// its logs and stable keys read back from the one database, and raft/ is
// gone.
func TestOpenDBMovesTheOldRaftStore(t *testing.T) {
	dir := t.TempDir()
	old, err := openBadger(filepath.Join(dir, "raft"), true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(txn *badger.Txn) error {
		for i := uint64(5); i <= 9; i++ {
			k := append([]byte("l/"), be64(i)...)
			if err := txn.Set(k, encodeLog(&raft.Log{Index: i, Term: 2, Data: []byte{byte(i)}})); err != nil {
				return err
			}
		}
		return txn.Set([]byte("s/CurrentTerm"), be64(2))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := OpenDB(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 5 || last != 9 {
		t.Fatalf("bounds %d..%d, want 5..9", first, last)
	}
	var l raft.Log
	if err := s.GetLog(7, &l); err != nil || l.Term != 2 || l.Data[0] != 7 {
		t.Fatalf("log 7 = %+v, %v", l, err)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Fatalf("CurrentTerm = %d, %v", term, err)
	}
	for _, gone := range []string{"raft", "raft.moved"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Fatalf("%s still exists (%v)", gone, err)
		}
	}
}
