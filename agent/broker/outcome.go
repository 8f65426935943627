package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pcm-mesh/pcm/rules/bill"

	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/rules"
)

// adopt takes up an agreement of this broker's as soon as the ledger
// applies it: usually just before the round that proposed it records it
// itself, and also after that round gave up on it (the proposal's outcome
// was unknown, e.g. the leader changed). The ledger is the truth, the task
// is placed there; the note does not guess which case it was. An
// agreement id is unique per task attempt, so no other agreement for the
// attempt can commit, and the provider runs what the ledger says.
func (b *Broker) adopt(r consensus.Record) {
	var ag consensus.Agreement
	if json.Unmarshal(r.Payload, &ag) != nil || ag.Broker != b.self {
		return
	}
	b.update(ag.TaskID, func(t *tasks.Task) bool {
		if t.AgreementID != "" || t.Attempt != ag.Attempt || (t.State != tasks.StateQueued && t.State != tasks.StateNegotiating) {
			return false
		}
		t.Provider, t.AgreementID, t.Price, t.Bill = ag.Provider, ag.ID, ag.Price, billTerms(&ag)
		t.SetState(tasks.StatePlaced, fmt.Sprintf("agreement %s committed at index %d", ag.ID, r.Index), time.Now().UTC())
		return true
	})
}

// adoptCommitted looks for a committed agreement of the task's current
// attempt after a proposal failed with an unknown outcome or a taken id;
// true when there was one and the task is placed on it.
func (b *Broker) adoptCommitted(taskID string) bool {
	ctx, cancel := context.WithTimeout(b.d.Ctx, 10*time.Second)
	defer cancel()
	recs, err := b.d.Ledger.Entries(ctx, consensus.Filter{Type: consensus.TypeAgreement, Task: taskID})
	if err != nil {
		return false
	}
	for _, r := range recs {
		b.adopt(r)
	}
	t, ok := b.Get(taskID)
	return ok && t.AgreementID != ""
}

// billTerms are an agreement's billing terms when the ledger bills it.
func billTerms(ag *consensus.Agreement) *bill.Terms {
	if !ag.Billed() {
		return nil
	}
	return ag.Bill
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// onRecord follows ledger events of tasks this agent brokers; the end of
// any attempt, this broker's or not, wakes a task waiting for capacity.
func (b *Broker) OnRecord(r consensus.Record) {
	if r.Type == consensus.TypeAgreement {
		b.adopt(r)
		return
	}
	if r.Type != consensus.TypeTaskEvent {
		return
	}
	var ev consensus.TaskEvent
	if json.Unmarshal(r.Payload, &ev) != nil {
		return
	}
	if ev.Event != consensus.EventStarted {
		b.view.freed(ev.Author)
		b.gate.release(1)
	}
	b.mu.Lock()
	t, ok := b.tasks[ev.TaskID]
	current := ok && t.AgreementID == ev.AgreementID
	b.mu.Unlock()
	if !current {
		return
	}
	switch ev.Event {
	case consensus.EventStarted:
		b.update(ev.TaskID, func(t *tasks.Task) bool {
			if t.State != tasks.StatePlaced {
				return false
			}
			t.SetState(tasks.StateRunning, "started on "+ev.Author, time.Now().UTC())
			return true
		})
	case consensus.EventSucceeded, consensus.EventFailed, consensus.EventCancelled:
		b.d.Go(func() { b.ended(ev) })
	}
}

// ended settles an attempt and either finishes the task or re-places it.
func (b *Broker) ended(ev consensus.TaskEvent) {
	t, ok := b.Get(ev.TaskID)
	if !ok || t.AgreementID != ev.AgreementID || tasks.Final(t.State) {
		return
	}
	amount := b.settle(t, ev)
	b.update(ev.TaskID, func(t *tasks.Task) bool {
		if t.AgreementID != ev.AgreementID || tasks.Final(t.State) {
			return false
		}
		t.ExitCode, t.Usage, t.Settled, t.Results = ev.ExitCode, ev.Usage, t.Settled+amount, ev.Results
		now := time.Now().UTC()
		switch {
		case ev.Event == consensus.EventSucceeded:
			t.SetState(tasks.StateSucceeded, "", now)
		case ev.Event == consensus.EventCancelled:
			t.SetState(tasks.StateCancelled, ev.Message, now)
		case t.RetriesLeft > 0:
			t.RetriesLeft--
			t.Attempt++
			t.Excluded = append(t.Excluded, t.Provider)
			t.Provider, t.AgreementID, t.Bill = "", "", nil
			t.SetState(tasks.StateQueued, fmt.Sprintf("attempt failed (exit %d: %s); retrying elsewhere", ev.ExitCode, ev.Message), now)
		default:
			t.SetState(tasks.StateFailed, fmt.Sprintf("exit %d: %s", ev.ExitCode, ev.Message), now)
		}
		return true
	})
}

// settle records the bill for an ended attempt: the broker pays the
// provider the agreed hourly price for the measured usage. A billed
// agreement's attempt was billed by the ledger as the event applied; the
// broker computes the same amount from the same terms.
func (b *Broker) settle(t *tasks.Task, ev consensus.TaskEvent) int64 {
	if t.Bill != nil {
		amount := t.Bill.Amount(t.Price, ev.Usage.CPUSeconds, ev.Usage.WallSeconds)
		b.d.Metrics.Settled(amount)
		return amount
	}
	fw, err := b.d.Frameworks.Resolve(t.Framework)
	if err != nil {
		return 0
	}
	b.mu.Lock()
	rt := b.parsed[t.ID]
	b.mu.Unlock()
	amount := fw.Bill(rt, t.Price, rules.Usage{CPUSeconds: ev.Usage.CPUSeconds, WallSeconds: ev.Usage.WallSeconds})
	st := consensus.Settlement{V: consensus.PayloadVersion, ID: ev.AgreementID + "/settle", TaskID: t.ID, AgreementID: ev.AgreementID, Payer: b.self, Payee: t.Provider, Amount: amount, Time: time.Now().UTC()}
	e, err := consensus.NewEntry(consensus.TypeSettlement, st.ID, st, b.d.Identity)
	if err != nil {
		b.d.Log.Error("settlement", "task", t.ID, "err", err)
		return 0
	}
	ctx, cancel := context.WithTimeout(b.d.Ctx, 5*time.Minute)
	defer cancel()
	if _, err := b.d.Ledger.Propose(ctx, e); err != nil {
		b.d.Log.Error("record settlement", "task", t.ID, "err", err)
		return 0
	}
	b.d.Metrics.Settled(amount)
	return amount
}

func (b *Broker) lost(t *tasks.Task) {
	te := consensus.TaskEvent{V: consensus.PayloadVersion, ID: t.AgreementID + "/lost", TaskID: t.ID, AgreementID: t.AgreementID, Event: consensus.EventLost, Author: b.self, Message: "provider " + t.Provider + " did not renew its lease", Time: time.Now().UTC()}
	e, err := consensus.NewEntry(consensus.TypeTaskEvent, te.ID, te, b.d.Identity)
	if err == nil {
		ctx, cancel := context.WithTimeout(b.d.Ctx, 5*time.Minute)
		_, err = b.d.Ledger.Propose(ctx, e)
		cancel()
	}
	if err != nil {
		// The first final event of an attempt wins: if the provider's
		// outcome (or an earlier "lost" of ours) got there first, follow
		// the ledger.
		switch end := b.d.Ledger.AttemptEnd(t.AgreementID); end {
		case consensus.EventLost:
		case "":
			b.d.Log.Error("record lost attempt", "task", t.ID, "err", err)
			b.leases.mu.Lock()
			delete(b.leases.declared, t.AgreementID) // try again at the next lease check
			b.leases.mu.Unlock()
			return
		default:
			b.d.Log.Info("attempt ended before it was declared lost", "task", t.ID, "end", end)
			return
		}
	}
	b.update(t.ID, func(cur *tasks.Task) bool {
		if cur.AgreementID != t.AgreementID || tasks.Final(cur.State) {
			return false
		}
		now := time.Now().UTC()
		cur.LostCount++
		cur.Excluded = append(cur.Excluded, cur.Provider)
		cur.History = append(cur.History, tasks.Transition{State: tasks.StateLost, Time: now, Note: te.Message})
		if cur.LostCount > maxLost+cur.RetriesLeft {
			cur.SetState(tasks.StateFailed, "lost on too many providers", now)
			return true
		}
		cur.Attempt++
		cur.Provider, cur.AgreementID, cur.Bill = "", "", nil
		cur.SetState(tasks.StateQueued, "provider lost; re-placing", now)
		return true
	})
}

// cancelLocal cancels a task that is not placed yet.
func (b *Broker) CancelLocal(id, by string) (bool, error) {
	placed := false
	found := false
	b.update(id, func(t *tasks.Task) bool {
		found = true
		if tasks.Final(t.State) {
			return false
		}
		if t.State == tasks.StatePlaced || t.State == tasks.StateRunning {
			placed = true
			return false
		}
		t.SetState(tasks.StateCancelled, "cancelled by "+by+" before placement", time.Now().UTC())
		return true
	})
	if !found {
		return false, tasks.ErrNotFound
	}
	return placed, nil
}

// resume picks up the tasks in the store after a restart.
func (b *Broker) Resume() error {
	ts, err := b.d.Store.All()
	if err != nil {
		return err
	}
	for _, t := range ts {
		rt, err := rules.ParseTask(t.ID, t.Document)
		if err != nil {
			b.d.Log.Error("stored task unreadable", "task", t.ID, "err", err)
			continue
		}
		b.track(t, rt)
		if t.AgreementID != "" && !tasks.Final(t.State) {
			b.catchUp(t.ID, t.AgreementID)
		}
	}
	return nil
}

// catchUp replays ledger events of an in-flight task missed while down.
func (b *Broker) catchUp(taskID, agreementID string) {
	recs, err := b.d.Ledger.Entries(b.d.Ctx, consensus.Filter{Type: consensus.TypeTaskEvent, Task: taskID})
	if err != nil {
		return
	}
	for _, r := range recs {
		b.OnRecord(r)
	}
	_ = agreementID
}
