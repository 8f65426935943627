package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/agent"
)

// explainTable prints a task's negotiation rounds; a run of rounds that
// went alike is one entry ("rounds 2–29 (alike)"), so a task that waits
// for hours does not print thousands of lines.
func explainTable(w io.Writer, t *agent.Task) {
	fmt.Fprintf(w, "task %s is %s %s\n", t.ID, t.State, t.Message)
	if len(t.Rounds) == 0 {
		fmt.Fprintln(w, "no negotiation round yet")
		return
	}
	if first := t.Rounds[0].N; first > 1 {
		fmt.Fprintf(w, "(rounds 1–%d are no longer kept)\n", first-1)
	}
	for _, r := range t.Rounds {
		at := clock(r.Time)
		if r.Last() > r.N {
			fmt.Fprintf(w, "rounds %d–%d (attempt %d, %d alike) %s – %s: %s\n", r.N, r.Last(), r.Attempt, r.Last()-r.N+1, at, clock(r.LastTime), r.Outcome)
		} else {
			fmt.Fprintf(w, "round %d (attempt %d) at %s: %s\n", r.N, r.Attempt, at, r.Outcome)
		}
		for _, c := range r.Candidates {
			fmt.Fprintf(w, "  candidate\t%s\n", c)
		}
		for _, b := range r.Bids {
			fmt.Fprintf(w, "  bid\t%s\t%d micros/h\n", b.Provider, b.Price)
		}
		for _, d := range r.Declines {
			fmt.Fprintf(w, "  declined\t%s\t%s\n", d.Provider, strings.Join(d.Reasons, "; "))
		}
		for _, d := range r.Ruled {
			fmt.Fprintf(w, "  ruled out\t%s\t%s\n", d.Provider, strings.Join(d.Reasons, "; "))
		}
		if r.Winner != "" {
			fmt.Fprintf(w, "  winner\t%s\n", r.Winner)
		}
	}
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05.000")
}
