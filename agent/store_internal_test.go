package agent

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
	s, err := newTaskStore(db, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 50 {
		tk := &Task{ID: newTaskID(), Name: "x", Attempt: i}
		tk.setState(StateQueued, "", time.Now())
		if err := s.put(tk, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		got, err := s.get(tk.ID)
		if err != nil || got.Attempt != i || got.State != StateQueued {
			t.Fatalf("get %s = %+v, %v", tk.ID, got, err)
		}
	}
	t.Logf("50 puts+gets, half synced: %s", time.Since(start))
	if _, err := s.get("nope"); err == nil {
		t.Fatal("missing task found")
	}
	// An intermediate state waits in memory, reads see it, and close
	// writes it: a store opened afterwards on the database finds it.
	last := &Task{ID: newTaskID(), Name: "y"}
	last.setState(StateNegotiating, "", time.Now())
	if err := s.put(last, false); err != nil {
		t.Fatal(err)
	}
	if all, err := s.all(); err != nil || len(all) != 51 {
		t.Fatalf("all = %d tasks, %v; want 51", len(all), err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s2, err := newTaskStore(db, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.close()
	if got, err := s2.get(last.ID); err != nil || got.State != StateNegotiating {
		t.Fatalf("after close, get %s = %+v, %v", last.ID, got, err)
	}
}
