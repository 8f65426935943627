package tasks

import (
	"fmt"
	"testing"
	"time"
)

// Rounds that went alike fold into one entry ("rounds 2–29"), so a
// waiting task's explanation stays short; a round that differs starts a
// new entry, and numbering continues across folded runs.
func TestAddRoundFoldsAlikeRounds(t *testing.T) {
	var tk Task
	start := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	declined := func(i int, reason string) Round {
		return Round{
			Attempt: 1, Time: start.Add(time.Duration(i) * time.Second),
			// Candidates in a different order each time: still alike.
			Candidates: []string{[]string{"a", "b"}[i%2], []string{"b", "a"}[i%2]},
			Declines:   []RuledOut{{Provider: "a", Reasons: []string{reason}}},
			Outcome:    "no bid",
		}
	}
	tk.AddRound(declined(0, "busy"))
	for i := 1; i <= 28; i++ {
		tk.AddRound(declined(i, "needs 10000 cpu, has 4"))
	}
	tk.AddRound(declined(29, "busy"))
	if len(tk.Rounds) != 3 {
		t.Fatalf("%d entries, want 3 (round 1, rounds 2–29, round 30): %+v", len(tk.Rounds), tk.Rounds)
	}
	got := ""
	for _, r := range tk.Rounds {
		got += fmt.Sprintf("%d-%d ", r.N, r.Last())
	}
	if got != "1-1 2-29 30-30 " {
		t.Errorf("entries %q, want \"1-1 2-29 30-30 \"", got)
	}
	if mid := tk.Rounds[1]; !mid.Time.Equal(start.Add(time.Second)) || !mid.LastTime.Equal(start.Add(28*time.Second)) {
		t.Errorf("rounds 2–29 ran %s – %s, want 06:00:01 – 06:00:28", mid.Time, mid.LastTime)
	}
	// A hundred alternating rounds keep at most maxRounds entries.
	for i := range 100 {
		tk.AddRound(declined(i, fmt.Sprint("reason ", i%2)))
	}
	if len(tk.Rounds) != maxRounds || tk.Rounds[len(tk.Rounds)-1].N != 130 {
		t.Errorf("%d entries, last round %d; want %d and 130", len(tk.Rounds), tk.Rounds[len(tk.Rounds)-1].N, maxRounds)
	}
}
