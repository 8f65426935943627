package consensus

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestLedgerMovesAnEarlierRaftStoreIntoTheLog: a ledger stopped by an
// earlier version (its raft logs and term in a Badger store, raft/) starts
// on the write-ahead log with the same logs, head and term, keeps
// committing, and leaves no Badger store behind.
func TestLedgerMovesAnEarlierRaftStoreIntoTheLog(t *testing.T) {
	c, head, hash := stoppedLedger(t, 30)

	// Turn the log back into the layout before it.
	dir := c.nodes[0].dir
	w, err := openWAL(filepath.Join(dir, LogDir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	old, err := OpenStore(filepath.Join(dir, legacyLogDir), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := w.FirstIndex()
	last, _ := w.LastIndex()
	for i := first; i <= last; i++ {
		var lg raft.Log
		if err := w.GetLog(i, &lg); err != nil {
			t.Fatal(err)
		}
		if err := old.StoreLog(&lg); err != nil {
			t.Fatal(err)
		}
	}
	term, err := w.GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Fatalf("CurrentTerm = %d, %v", term, err)
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"} {
		v, err := w.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if err := old.Set([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := firstErr(w.Close(), old.Close(), os.RemoveAll(filepath.Join(dir, LogDir))); err != nil {
		t.Fatal(err)
	}

	l := c.start(0, true)
	c.leader(10 * time.Second)
	if h, hh := l.Head(); h != head || hh != hash {
		t.Fatalf("head after the move = %d %s, want %d %s", h, hh, head, hash)
	}
	if f, _ := l.store.FirstIndex(); f != first {
		t.Fatalf("first log after the move = %d, want %d", f, first)
	}
	if got, err := l.store.GetUint64([]byte("CurrentTerm")); err != nil || got < term {
		t.Fatalf("term after the move = %d, %v; want >= %d", got, err, term)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyLogDir)); !os.IsNotExist(err) {
		t.Fatalf("the earlier store is still there: %v", err)
	}
	if _, err := l.Propose(t.Context(), agreementEntry(t, newSigner(t), newSigner(t), "after", 1)); err != nil {
		t.Fatal(err)
	}
	if h, _ := l.Head(); h != head+1 {
		t.Fatalf("head = %d, want %d", h, head+1)
	}
	c.stop(0)
	if rep, err := VerifyDir(dir, testVerifier{}, nil); err != nil || !rep.OK {
		t.Fatalf("verify after the move: %+v %v", rep, err)
	}
}

// TestOpenLogStoreRefusesALogInUse: a second open of a log another
// handle holds fails at once, naming the cause, instead of waiting.
func TestOpenLogStoreRefusesALogInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		s2, err := openLogStore(dir, testLogger(t))
		if err == nil {
			_ = s2.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a log in use opened twice")
		}
		t.Log(err)
	case <-time.After(30 * time.Second):
		t.Fatal("opening a log in use is still waiting after 30 s")
	}
}

// TestVerifyDirNamesALogThatLostItsTail: a log segment cut short (its
// last batches gone, as a torn write would leave them) opens, but offline
// verify names the gap between the log's end and what the state applied.
func TestVerifyDirNamesALogThatLostItsTail(t *testing.T) {
	c, _, _ := stoppedLedger(t, 20)
	segs, err := filepath.Glob(filepath.Join(c.nodes[0].dir, LogDir, "*.wal"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	end := len(data)
	for end > 0 && data[end-1] == 0 {
		end--
	}
	if err := os.Truncate(segs[0], int64(end*2/3)); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDir(c.nodes[0].dir, testVerifier{}, nil)
	if err == nil || !strings.Contains(err.Error(), "lost its tail") {
		t.Fatalf("verify of a cut log = %+v, %v; want an error naming the lost tail", rep, err)
	}
	t.Log(err)
}

// stoppedLedger is a one-node ledger that committed n agreements and was
// stopped; it returns the cluster and the head it stopped at.
func stoppedLedger(t *testing.T, n int) (*testCluster, uint64, string) {
	t.Helper()
	c := newTestCluster(t, 1, true, nil)
	l := c.start(0, true)
	c.leader(10 * time.Second)
	b, p := newSigner(t), newSigner(t)
	for i := range n {
		if _, err := l.Propose(t.Context(), agreementEntry(t, b, p, fmt.Sprintf("t%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	head, hash := l.Head()
	c.stop(0)
	return c, head, hash
}

// TestLogReadsBackAfterATailTruncationAndRestart: raft cuts a follower's
// conflicting suffix (DeleteRange at the tail) and appends anew; after a
// restart every log still reads back. raft-wal v0.4.0 marked the cut
// segment sealed without writing its index, and after a restart no log of
// it could be read ("sealed segment has no index block"; raft-wal#31,
// fixed in v0.4.1) — the leader-kill reliability run hit it.
func TestLogReadsBackAfterATailTruncationAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	logs := func(from, to, term uint64) []*raft.Log {
		var out []*raft.Log
		for i := from; i <= to; i++ {
			out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("log %d term %d", i, term))})
		}
		return out
	}
	if err := s.StoreLogs(logs(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(9, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(logs(9, 12, 2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openLogStore(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := uint64(1); i <= 12; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("log %d after the restart: %v", i, err)
		}
		want := uint64(1)
		if i >= 9 {
			want = 2
		}
		if l.Term != want || string(l.Data) != fmt.Sprintf("log %d term %d", i, want) {
			t.Fatalf("log %d = term %d %q", i, l.Term, l.Data)
		}
	}
}
