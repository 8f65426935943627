package agent

import (
	"testing"
	"time"
)

func TestTaskStoreRoundTrip(t *testing.T) {
	s, err := openTaskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
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
