package tasks

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/rules/bill"

	"github.com/pcm-mesh/pcm/consensus"
)

// Task states. Succeeded, failed, cancelled, lost (without retries left)
// and expired are final.
const (
	StateQueued      = "queued"
	StateNegotiating = "negotiating"
	StatePlaced      = "placed"
	StateRunning     = "running"
	StateSucceeded   = "succeeded"
	StateFailed      = "failed"
	StateCancelled   = "cancelled"
	StateLost        = "lost"
	StateExpired     = "expired"
)

// ErrNotFound is a task id no store or broker knows.
var ErrNotFound = errors.New("task not found")

// NewID is a fresh random task (or call-for-proposals) id.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// finalState reports whether s ends a task.
func Final(s string) bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateExpired:
		return true
	}
	return false
}

// Task is the broker's record of one submitted task. It is persisted in
// Badger on every change so a restarted broker picks it up again.
type Task struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Framework   string          `json:"framework"`
	Document    json.RawMessage `json:"document"`
	Hash        string          `json:"hash"`
	Broker      string          `json:"broker"`
	Submitter   string          `json:"submitter"`
	State       string          `json:"state"`
	Message     string          `json:"message,omitempty"`
	SubmittedAt time.Time       `json:"submitted_at"`
	Deadline    time.Time       `json:"deadline"`
	Attempt     int             `json:"attempt"`
	RetriesLeft int             `json:"retries_left"`
	LostCount   int             `json:"lost_count,omitempty"`
	Provider    string          `json:"provider,omitempty"`
	AgreementID string          `json:"agreement_id,omitempty"`
	Price       int64           `json:"price,omitempty"`
	// Bill are the billing terms of the current agreement when the ledger
	// bills the attempt itself (consensus.BilledAgreementVersion).
	Bill     *bill.Terms     `json:"bill,omitempty"`
	Excluded []string        `json:"excluded,omitempty"`
	ExitCode int             `json:"exit_code,omitempty"`
	Usage    consensus.Usage `json:"usage"`
	Settled  int64           `json:"settled,omitempty"`
	// Results names the archive of the attempt's outputs (from its final
	// ledger event); fetch it with `pcm-agent tasks results`.
	Results   *consensus.ResultsRef `json:"results,omitempty"`
	Rounds    []Round               `json:"rounds,omitempty"`
	History   []Transition          `json:"history"`
	NextRound time.Time             `json:"next_round,omitzero"`
}

// Clone is a copy of t that shares no slices with it.
func (t *Task) Clone() *Task {
	c := *t
	c.Rounds = slices.Clone(t.Rounds)
	c.History = slices.Clone(t.History)
	c.Excluded = slices.Clone(t.Excluded)
	return &c
}

// Transition is one state change.
type Transition struct {
	State string    `json:"state"`
	Time  time.Time `json:"time"`
	Note  string    `json:"note,omitempty"`
}

// Round is one negotiation round, kept for `tasks explain`.
type Round struct {
	N          int         `json:"n"`
	Attempt    int         `json:"attempt"`
	Time       time.Time   `json:"time"`
	Candidates []string    `json:"candidates"`
	Ruled      []RuledOut  `json:"ruled_out,omitempty"`
	Bids       []BidRecord `json:"bids,omitempty"`
	Declines   []RuledOut  `json:"declines,omitempty"`
	Winner     string      `json:"winner,omitempty"`
	Outcome    string      `json:"outcome"`
	// Through is set when this entry stands for rounds N to Through, all
	// alike (same candidates, bids, declines, reasons and outcome): a task
	// that waits re-negotiates the same way many times. LastTime is when
	// round Through ran.
	Through  int       `json:"through,omitempty"`
	LastTime time.Time `json:"last_time,omitzero"`
}

// Last is the number of the last round this entry stands for.
func (r Round) Last() int { return max(r.N, r.Through) }

// alike reports whether two rounds went the same way (everything but
// their numbers and times is equal, in any order).
func (r Round) alike(o Round) bool {
	return reflect.DeepEqual(r.normal(), o.normal())
}

func (r Round) normal() Round {
	r.N, r.Through, r.Time, r.LastTime = 0, 0, time.Time{}, time.Time{}
	r.Candidates = slices.Sorted(slices.Values(r.Candidates))
	byProvider := func(a, b RuledOut) int { return strings.Compare(a.Provider, b.Provider) }
	r.Ruled = slices.SortedFunc(slices.Values(r.Ruled), byProvider)
	r.Declines = slices.SortedFunc(slices.Values(r.Declines), byProvider)
	r.Bids = slices.SortedFunc(slices.Values(r.Bids), func(a, b BidRecord) int { return strings.Compare(a.Provider, b.Provider) })
	return r
}

// RuledOut is a provider that cannot take the task, with every reason.
type RuledOut struct {
	Provider string   `json:"provider"`
	Reasons  []string `json:"reasons"`
}

// BidRecord is one bid received.
type BidRecord struct {
	Provider string `json:"provider"`
	Price    int64  `json:"price"`
}

const maxRounds = 20

// addRound numbers r and keeps it, folding it into the previous entry
// when both went alike; it keeps the last maxRounds entries.
func (t *Task) AddRound(r Round) {
	r.N, r.Through, r.LastTime = 1, 0, time.Time{}
	if n := len(t.Rounds); n > 0 {
		last := &t.Rounds[n-1]
		r.N = last.Last() + 1
		if last.alike(r) {
			last.Through, last.LastTime = r.N, r.Time
			return
		}
	}
	t.Rounds = append(t.Rounds, r)
	if len(t.Rounds) > maxRounds {
		t.Rounds = t.Rounds[len(t.Rounds)-maxRounds:]
	}
}

// setState records a transition (no-op when unchanged).
func (t *Task) SetState(s, note string, now time.Time) {
	if t.State == s && note == t.Message {
		return
	}
	t.State, t.Message = s, note
	t.History = append(t.History, Transition{State: s, Time: now, Note: note})
	// A task that waits long is negotiated many times: keep the first
	// transitions and the recent ones.
	if len(t.History) > maxHistory {
		t.History = append(t.History[:10], t.History[len(t.History)-(maxHistory-10):]...)
	}
}

const maxHistory = 60
