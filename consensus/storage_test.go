package consensus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestMoveInto: a database of the layout before (its own directory) is
// moved into the state database under the renamed prefix, keys under no
// listed prefix are dropped, the old directory is gone, and moving again
// finds nothing (-1).
func TestMoveInto(t *testing.T) {
	dir := t.TempDir()
	old, err := OpenDB(filepath.Join(dir, "old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(txn *badger.Txn) error {
		return firstErr(txn.Set([]byte("task/a"), []byte("1")), txn.Set([]byte("task/b"), []byte("2")), txn.Set([]byte("other"), []byte("3")))
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
	oldDir := filepath.Join(dir, "old", StoreDir)
	n, err := MoveInto(db, oldDir, map[string]string{"task/": "t2/"})
	if err != nil || n != 2 {
		t.Fatalf("MoveInto = %d, %v; want 2 keys", n, err)
	}
	err = db.View(func(txn *badger.Txn) error {
		for k, want := range map[string]string{"t2/a": "1", "t2/b": "2"} {
			item, err := txn.Get([]byte(k))
			if err != nil {
				return err
			}
			if v, _ := item.ValueCopy(nil); string(v) != want {
				t.Errorf("%s = %q, want %q", k, v, want)
			}
		}
		if _, err := txn.Get([]byte("other")); err == nil {
			t.Error("a key under no listed prefix was moved")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{oldDir, oldDir + ".moved"} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Fatalf("%s still exists (%v)", gone, err)
		}
	}
	if n, err := MoveInto(db, oldDir, map[string]string{"task/": "t2/"}); n != -1 || err != nil {
		t.Fatalf("MoveInto again = %d, %v; want -1, nil", n, err)
	}
}
