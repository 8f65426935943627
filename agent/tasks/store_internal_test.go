package tasks

import (
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
)

func TestTaskStoreRoundTrip(t *testing.T) {
	db, err := consensus.OpenDB(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := OpenStore(db, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 50 {
		tk := &Task{ID: NewID(), Name: "x", Attempt: i}
		tk.SetState(StateQueued, "", time.Now())
		if err := s.Put(tk, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(tk.ID)
		if err != nil || got.Attempt != i || got.State != StateQueued {
			t.Fatalf("get %s = %+v, %v", tk.ID, got, err)
		}
	}
	t.Logf("50 puts+gets, half synced: %s", time.Since(start))
	if _, err := s.Get("nope"); err == nil {
		t.Fatal("missing task found")
	}
	// An intermediate state waits in memory, reads see it, and close
	// writes it: a store opened afterwards on the database finds it.
	last := &Task{ID: NewID(), Name: "y"}
	last.SetState(StateNegotiating, "", time.Now())
	if err := s.Put(last, false); err != nil {
		t.Fatal(err)
	}
	if all, err := s.All(); err != nil || len(all) != 51 {
		t.Fatalf("all = %d tasks, %v; want 51", len(all), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(db, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.Get(last.ID); err != nil || got.State != StateNegotiating {
		t.Fatalf("after close, get %s = %+v, %v", last.ID, got, err)
	}
}
