package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// TaskSummary is one row of the page's task list: what the ledger says
// about a task, completed by this agent's broker record when it has one.
type TaskSummary struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	State     string    `json:"state"`
	Broker    string    `json:"broker,omitempty"`
	Provider  string    `json:"provider,omitempty"`
	Framework string    `json:"framework,omitempty"`
	Submitter string    `json:"submitter,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	Price     int64     `json:"price,omitempty"`
	Settled   int64     `json:"settled,omitempty"`
	Submitted time.Time `json:"submitted,omitzero"`
	Updated   time.Time `json:"updated,omitzero"`
	// Local is true when this agent brokers the task.
	Local bool `json:"local,omitempty"`
}

// The ledger records the index reads; the fields it does not need are left
// out so an API change elsewhere does not break the page.
type ledgerRecord struct {
	Index   uint64          `json:"index"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	// Billed: the final event of a billed agreement's attempt, with what
	// the ledger billed (consensus.Billed).
	Billed *struct {
		Amount int64 `json:"amount"`
	} `json:"billed"`
}

type ledgerPayload struct {
	TaskID    string    `json:"task_id"`
	Framework string    `json:"framework"`
	Broker    string    `json:"broker"`
	Provider  string    `json:"provider"`
	Attempt   int       `json:"attempt"`
	Price     int64     `json:"price"`
	Event     string    `json:"event"`
	Amount    int64     `json:"amount"`
	Time      time.Time `json:"time"`
}

// brokerTask is the part of the broker's task record the list shows.
type brokerTask struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Framework   string    `json:"framework"`
	Broker      string    `json:"broker"`
	Submitter   string    `json:"submitter"`
	State       string    `json:"state"`
	SubmittedAt time.Time `json:"submitted_at"`
	Attempt     int       `json:"attempt"`
	Provider    string    `json:"provider"`
	Price       int64     `json:"price"`
	Settled     int64     `json:"settled"`
	History     []struct {
		Time time.Time `json:"time"`
	} `json:"history"`
}

// taskIndex folds the ledger's task records into summaries, reading only
// the records past its cursor on each refresh.
type taskIndex struct {
	get func(ctx context.Context, path string, v any) error
	// watched: changed() is called on every change of the broker's tasks,
	// so they are re-read only when dirty (or older than ownMaxAge).
	watched bool
	dirty   atomic.Bool

	mu     sync.Mutex
	cursor uint64
	ledger map[string]*TaskSummary
	own    []brokerTask
	ownAt  time.Time
}

// ownMaxAge bounds how long a watched index trusts its copy of the
// broker's tasks.
const ownMaxAge = 10 * time.Second

// changed marks the broker's tasks as changed.
func (x *taskIndex) changed() { x.dirty.Store(true) }

func newTaskIndex(get func(ctx context.Context, path string, v any) error) *taskIndex {
	return &taskIndex{get: get, ledger: map[string]*TaskSummary{}}
}

const pageSize = 1000

// list refreshes from the ledger and merges this agent's own tasks,
// newest first. A ledger error is returned with whatever is known.
func (x *taskIndex) list(ctx context.Context) ([]TaskSummary, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	lerr := x.refresh(ctx)
	var oerr error
	if !x.watched || x.dirty.Swap(false) || time.Since(x.ownAt) > ownMaxAge {
		var own []brokerTask
		if oerr = x.get(ctx, "/v1/tasks", &own); oerr == nil {
			x.own, x.ownAt = own, time.Now()
		} else {
			x.dirty.Store(true)
		}
	}
	own := x.own
	out := make(map[string]TaskSummary, len(x.ledger)+len(own))
	for id, t := range x.ledger {
		out[id] = *t
	}
	for _, b := range own {
		t := out[b.ID]
		t.ID, t.Name, t.Submitter, t.Local = b.ID, b.Name, b.Submitter, true
		t.State, t.Broker, t.Framework = b.State, b.Broker, b.Framework
		t.Submitted, t.Attempt = b.SubmittedAt, b.Attempt
		t.Provider = firstNonEmpty(b.Provider, t.Provider)
		t.Price = max(b.Price, t.Price)
		t.Settled = max(b.Settled, t.Settled)
		if n := len(b.History); n > 0 && b.History[n-1].Time.After(t.Updated) {
			t.Updated = b.History[n-1].Time
		}
		out[b.ID] = t
	}
	list := make([]TaskSummary, 0, len(out))
	for _, t := range out {
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i].sortTime(), list[j].sortTime()
		if !a.Equal(b) {
			return a.After(b)
		}
		return list[i].ID < list[j].ID
	})
	if lerr != nil {
		return list, lerr
	}
	return list, oerr
}

func (t TaskSummary) sortTime() time.Time {
	if !t.Submitted.IsZero() {
		return t.Submitted
	}
	return t.Updated
}

func (x *taskIndex) refresh(ctx context.Context) error {
	for {
		var recs []ledgerRecord
		path := fmt.Sprintf("/v1/ledger/entries?from=%d&limit=%d", x.cursor+1, pageSize)
		if err := x.get(ctx, path, &recs); err != nil {
			return err
		}
		for _, r := range recs {
			x.apply(r)
			x.cursor = r.Index
		}
		if len(recs) < pageSize {
			return nil
		}
	}
}

// apply folds one record: an agreement places a task, an event moves it,
// a settlement or a billed final event adds what was paid.
func (x *taskIndex) apply(r ledgerRecord) {
	var p ledgerPayload
	if json.Unmarshal(r.Payload, &p) != nil || p.TaskID == "" {
		return
	}
	t := x.ledger[p.TaskID]
	if t == nil {
		t = &TaskSummary{ID: p.TaskID}
		x.ledger[p.TaskID] = t
	}
	switch r.Type {
	case "agreement":
		if p.Attempt < t.Attempt {
			return
		}
		t.State, t.Broker, t.Provider, t.Framework = "placed", p.Broker, p.Provider, p.Framework
		t.Attempt, t.Price = p.Attempt, p.Price
	case "task_event":
		t.State = p.Event
		if r.Billed != nil {
			t.Settled += r.Billed.Amount
		}
	case "settlement":
		t.Settled += p.Amount
	default:
		return
	}
	if p.Time.After(t.Updated) {
		t.Updated = p.Time
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) handleTasks(w http.ResponseWriter, r *http.Request) {
	list, err := s.tasks.list(r.Context())
	resp := struct {
		Tasks []TaskSummary `json:"tasks"`
		Error string        `json:"error,omitempty"`
	}{Tasks: list}
	if err != nil {
		resp.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}

// head is the last ledger index the index has read.
func (x *taskIndex) head() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cursor
}
