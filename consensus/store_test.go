package consensus

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// The tests below mirror raft-boltdb's store conformance tests.

func mustNewStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := OpenStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

func testLog(idx uint64, data string) *raft.Log {
	return &raft.Log{Index: idx, Term: idx / 3, Type: raft.LogCommand, Data: []byte(data),
		Extensions: []byte("x"), AppendedAt: time.Unix(1700000000, int64(idx))}
}

func TestStoreFirstLastIndex(t *testing.T) {
	s, _ := mustNewStore(t)
	for _, get := range []func() (uint64, error){s.FirstIndex, s.LastIndex} {
		if idx, err := get(); err != nil || idx != 0 {
			t.Fatalf("empty store index = %d, %v; want 0", idx, err)
		}
	}
	if err := s.StoreLogs([]*raft.Log{testLog(1, "a"), testLog(2, "b"), testLog(3, "c")}); err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 1 || last != 3 {
		t.Fatalf("first, last = %d, %d; want 1, 3", first, last)
	}
}

func TestStoreGetAndStoreLog(t *testing.T) {
	s, _ := mustNewStore(t)
	var out raft.Log
	if err := s.GetLog(1, &out); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store: %v; want ErrLogNotFound", err)
	}
	in := testLog(1, "hello")
	if err := s.StoreLog(in); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(1, &out); err != nil {
		t.Fatal(err)
	}
	if out.Index != in.Index || out.Term != in.Term || out.Type != in.Type || !bytes.Equal(out.Data, in.Data) ||
		!bytes.Equal(out.Extensions, in.Extensions) || !out.AppendedAt.Equal(in.AppendedAt) {
		t.Fatalf("GetLog = %+v; want %+v", out, *in)
	}
}

func TestStoreLogsBatch(t *testing.T) {
	s, _ := mustNewStore(t)
	var logs []*raft.Log
	for i := uint64(1); i <= 1000; i++ {
		logs = append(logs, testLog(i, string(bytes.Repeat([]byte{byte(i)}, int(i%300)))))
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{1, 2, 500, 1000} {
		var out raft.Log
		if err := s.GetLog(i, &out); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if !bytes.Equal(out.Data, logs[i-1].Data) {
			t.Fatalf("GetLog(%d) data differs", i)
		}
	}
}

func TestStoreDeleteRange(t *testing.T) {
	tests := []struct {
		name        string
		min, max    uint64
		first, last uint64
	}{
		{"prefix", 1, 2, 3, 5},
		{"suffix", 4, 5, 1, 3},
		{"all", 1, 5, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := mustNewStore(t)
			var logs []*raft.Log
			for i := uint64(1); i <= 5; i++ {
				logs = append(logs, testLog(i, "d"))
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(tt.min, tt.max); err != nil {
				t.Fatal(err)
			}
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			if first != tt.first || last != tt.last {
				t.Fatalf("after DeleteRange(%d, %d): first, last = %d, %d; want %d, %d", tt.min, tt.max, first, last, tt.first, tt.last)
			}
			var out raft.Log
			if err := s.GetLog(tt.min, &out); !errors.Is(err, raft.ErrLogNotFound) {
				t.Fatalf("deleted log %d still readable: %v", tt.min, err)
			}
		})
	}
}

func TestStoreStableKeys(t *testing.T) {
	s, dir := mustNewStore(t)
	if _, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) = %v; want the text \"not found\" raft checks", err)
	}
	if _, err := s.GetUint64([]byte("missing")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing) = %v; want \"not found\"", err)
	}
	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("term"), 42); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{testLog(7, "a"), testLog(8, "b")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Everything survives a reopen.
	s2, err := OpenStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, err := s2.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get(k) after reopen = %q, %v", v, err)
	}
	if v, err := s2.GetUint64([]byte("term")); err != nil || v != 42 {
		t.Fatalf("GetUint64(term) after reopen = %d, %v", v, err)
	}
	first, _ := s2.FirstIndex()
	last, _ := s2.LastIndex()
	if first != 7 || last != 8 {
		t.Fatalf("bounds after reopen = %d, %d; want 7, 8", first, last)
	}
}

// TestStoreOpensValueLogLayout: a raft store written when every value
// over 1 KiB went to the value log (before the synced store kept values
// up to 64 KiB in the tree) reads back the same logs, and takes new ones.
func TestStoreOpensValueLogLayout(t *testing.T) {
	dir := t.TempDir()
	opts := badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).
		WithMemTableSize(1 << 20).WithValueLogFileSize(16 << 20).WithValueThreshold(1 << 10)
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	old := &Store{db: db}
	big := string(bytes.Repeat([]byte("v"), 4<<10)) // over the old threshold: in the value log
	for i := uint64(1); i <= 50; i++ {
		if err := old.StoreLog(testLog(i, big)); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.StoreLog(testLog(51, big)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 51; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Index != i || string(l.Data) != big {
			t.Fatalf("log %d: index %d, %d bytes, %v", i, l.Index, len(l.Data), err)
		}
	}
}
