package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
)

func TestExplainShowsAlikeRoundsOnce(t *testing.T) {
	at := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	tk := agent.Task{ID: "t1", State: agent.StateQueued, Rounds: []agent.Round{
		{N: 3, Attempt: 1, Time: at, Outcome: "no eligible provider among 3 known"},
		{N: 4, Attempt: 1, Time: at, Through: 29, LastTime: at.Add(10 * time.Second), Outcome: "no bid",
			Declines: []agent.RuledOut{{Provider: "p1", Reasons: []string{"needs cpu 10000, free 4"}}}},
	}}
	var b bytes.Buffer
	explainTable(&b, &tk)
	out := b.String()
	for _, want := range []string{"(rounds 1–2 are no longer kept)", "round 3 (attempt 1)", "rounds 4–29 (attempt 1, 26 alike)", "needs cpu 10000"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 6 {
		t.Errorf("explain is %d lines:\n%s", n, out)
	}
}

func TestYAMLOutputKeepsJSONNames(t *testing.T) {
	var b bytes.Buffer
	v := struct {
		PeerID string            `json:"peer_id"`
		Addrs  []string          `json:"addrs"`
		Flag   string            `json:"flag"`
		Counts map[string]uint64 `json:"counts"`
	}{"12D3", []string{"/ip4/1.2.3.4/tcp/1"}, "true", map[string]uint64{"stale": 2}}
	if err := writeYAML(&b, v); err != nil {
		t.Fatal(err)
	}
	want := "peer_id: 12D3\naddrs:\n  - /ip4/1.2.3.4/tcp/1\nflag: \"true\"\ncounts:\n  stale: 2\n"
	if b.String() != want {
		t.Errorf("yaml:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestCountsByReason(t *testing.T) {
	if got := countsByReason(nil); got != "0" {
		t.Errorf("empty: %q, want 0", got)
	}
	if got := countsByReason(map[string]uint64{"stale": 2, "forged": 1}); got != "3 (forged 1, stale 2)" {
		t.Errorf("got %q", got)
	}
}
