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
	t.Logf("50 synced puts+gets: %s", time.Since(start))
	if _, err := s.get("nope"); err == nil {
		t.Fatal("missing task found")
	}
}
