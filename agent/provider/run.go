package provider

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/rules"
)

// commit starts a committed agreement once (from the stream or the ledger).
// The confirmed hold keeps counting the task's resources until the driver
// has admitted it and the fingerprint shows it, so no CFP in between can
// take the same capacity.
func (p *Provider) commit(agreementID string) {
	p.mu.Lock()
	h, ok := p.confirmed[agreementID]
	if !ok || h.agreement == nil || h.started {
		p.mu.Unlock()
		return
	}
	h.started = true
	h.expires = time.Now().Add(confirmedTTL)
	ag := *h.agreement
	drv := p.d.Drivers[h.driver]
	at := &attempt{ag: ag, driver: drv, specID: ag.ID, stop: make(chan struct{})}
	at.startLease(time.Now())
	p.attempts[ag.ID] = at
	p.byTask[ag.TaskID] = ag.ID
	p.mu.Unlock()
	p.d.Go(func() { p.run(at, h.task) })
}

// started drops the confirmed hold once the driver counts the task.
func (p *Provider) started(agreementID string) {
	if err := p.d.Host.Refresh(p.d.Ctx); err != nil {
		p.d.Log.Warn("fingerprint after start", "err", err)
	}
	p.mu.Lock()
	delete(p.confirmed, agreementID)
	p.mu.Unlock()
}

// OnRecord reacts to ledger records that concern this provider.
func (p *Provider) OnRecord(r consensus.Record) {
	if r.Type != consensus.TypeAgreement {
		return
	}
	var ag consensus.Agreement
	if json.Unmarshal(r.Payload, &ag) != nil {
		return
	}
	if ag.Provider == p.self {
		p.commit(ag.ID)
		return
	}
	// Fencing: a newer agreement for a task running here ends our attempt.
	p.mu.Lock()
	id, ok := p.byTask[ag.TaskID]
	at := p.attempts[id]
	p.mu.Unlock()
	if ok && at != nil && ag.Attempt > at.ag.Attempt {
		at.halt("superseded by agreement " + ag.ID)
	}
}

func (at *attempt) halt(reason string) {
	at.once.Do(func() {
		at.reason = reason
		close(at.stop)
	})
}

// run executes one attempt and records its events in the ledger.
//
// The attempt outlives this process: when the agent closes, run stops
// waiting (Close must end in seconds, not when the task does) and the next
// start re-attaches to the driver's task (recover).
func (p *Provider) run(at *attempt, task *rules.Task) {
	ctx, cancel := context.WithCancel(p.d.Ctx)
	defer cancel()
	defer func() {
		p.mu.Lock()
		delete(p.attempts, at.ag.ID)
		if p.byTask[at.ag.TaskID] == at.ag.ID {
			delete(p.byTask, at.ag.TaskID)
		}
		p.mu.Unlock()
		p.d.Host.Republish()
	}()
	spec := taskSpec(at.specID, task)
	err := p.d.Files.Prepare(ctx, at.ag, task, &spec)
	if err == nil {
		_, err = at.driver.Start(ctx, spec)
	}
	p.started(at.ag.ID)
	if err != nil && p.d.Ctx.Err() != nil {
		return // closing: recover decides at the next start
	}
	if err != nil && !errors.Is(err, drivers.ErrExists) {
		p.event(at.ag, consensus.EventFailed, drivers.Status{ExitCode: -1, Message: "start: " + err.Error()})
		return
	}
	p.event(at.ag, consensus.EventStarted, drivers.Status{})
	p.finish(ctx, at)
}

// finish waits for a started attempt (also after a restart) and records
// how it ended.
func (p *Provider) finish(ctx context.Context, at *attempt) {
	done := make(chan struct{})
	go func() {
		select {
		case <-at.stop:
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = at.driver.Stop(sctx, at.specID, 5*time.Second)
			cancel()
		case <-done:
		}
	}()
	st, err := at.driver.Wait(ctx, at.specID)
	close(done)
	if err != nil && p.d.Ctx.Err() != nil {
		return // the agent is closing; the task runs on and is recovered at the next start
	}
	// The capacity the attempt held is free now: count it before the
	// outcome reaches the brokers, which then call for proposals at once.
	if rerr := p.d.Host.Refresh(ctx); rerr != nil {
		p.d.Log.Warn("fingerprint after an attempt", "err", rerr)
	}
	p.mu.Lock()
	p.signalFreedLocked()
	p.mu.Unlock()
	if err != nil {
		st = drivers.Status{State: drivers.StateFailed, ExitCode: -1, Message: "wait: " + err.Error()}
	}
	ev := consensus.EventFailed
	switch st.State {
	case drivers.StateSucceeded:
		ev = consensus.EventSucceeded
	case drivers.StateCancelled:
		ev = consensus.EventCancelled
		if at.reason != "" {
			st.Message = at.reason
		}
	}
	if !at.countsNow() {
		// Fenced (or the lease ran out while this process stalled): the
		// broker declares the attempt lost and places it again, so this
		// run's outcome must not be recorded.
		p.d.Log.Warn("attempt ended after its lease; outcome not recorded", "agreement", at.ag.ID, "state", st.State)
		return
	}
	ref, err := p.d.Files.Collect(ctx, at.driver, at.specID, at.ag, ev)
	if err != nil {
		ev, st.Message = consensus.EventFailed, "outputs: "+err.Error()
	}
	p.eventWith(at.ag, ev, st, ref)
}

// event proposes a task event signed by this provider, retrying until the
// ledger takes it (ids are deterministic, so retries are idempotent).
func (p *Provider) event(ag consensus.Agreement, kind string, st drivers.Status) {
	p.eventWith(ag, kind, st, nil)
}

// eventWith is event with the attempt's results archive.
func (p *Provider) eventWith(ag consensus.Agreement, kind string, st drivers.Status, res *consensus.ResultsRef) {
	p.d.Metrics.Attempt(kind)
	if p.d.DropFinalEvents && kind != consensus.EventStarted {
		p.d.Log.Warn("fault injection: dropping ledger write", "event", ag.ID+"/"+kind)
		return
	}
	te := consensus.TaskEvent{
		V: consensus.PayloadVersion, ID: ag.ID + "/" + kind, TaskID: ag.TaskID, AgreementID: ag.ID,
		Event: kind, Author: p.self, ExitCode: st.ExitCode, Message: truncate(st.Message, 512),
		Usage: consensus.Usage{CPUSeconds: st.Usage.CPUSeconds, WallSeconds: st.Usage.WallSeconds}, Results: res, Time: time.Now().UTC(),
	}
	e, err := consensus.NewEntry(consensus.TypeTaskEvent, te.ID, te, p.d.Identity)
	if err != nil {
		p.d.Log.Error("task event", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := p.d.Ledger.Commit(ctx, e); err != nil {
		p.d.Log.Error("record task event", "event", te.ID, "err", err)
	}
}

// Cancel stops a task running here.
func (p *Provider) Cancel(taskID, by string) bool {
	p.mu.Lock()
	at := p.attempts[p.byTask[taskID]]
	p.mu.Unlock()
	if at == nil {
		return false
	}
	at.halt("cancelled by " + by)
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Recover reattaches to driver tasks that survived an agent restart: each
// driver task id is an agreement id; running ones are waited for again and
// finished ones get their final event (event ids make this idempotent).
func (p *Provider) Recover(ctx context.Context) {
	for _, name := range p.d.Order {
		d := p.d.Drivers[name]
		sts, err := d.Recover(ctx)
		if err != nil {
			p.d.Log.Warn("recover driver tasks", "driver", name, "err", err)
			continue
		}
		for _, st := range sts {
			rec, err := p.d.Ledger.Entry(ctx, st.ID)
			if err != nil || rec.Type != consensus.TypeAgreement {
				continue
			}
			var ag consensus.Agreement
			if json.Unmarshal(rec.Payload, &ag) != nil || ag.Provider != p.self {
				continue
			}
			if _, err := p.d.Ledger.Entry(ctx, ag.ID+"/"+consensus.EventSucceeded); err == nil {
				continue
			}
			at := &attempt{ag: ag, driver: d, specID: st.ID, stop: make(chan struct{})}
			at.startLease(time.Now()) // the broker's answer to the first renewal says whether it still counts
			p.mu.Lock()
			p.attempts[ag.ID] = at
			p.byTask[ag.TaskID] = ag.ID
			p.mu.Unlock()
			p.d.Go(func() {
				defer func() {
					p.mu.Lock()
					delete(p.attempts, ag.ID)
					delete(p.byTask, ag.TaskID)
					p.mu.Unlock()
				}()
				if _, err := p.d.Ledger.Entry(ctx, ag.ID+"/"+consensus.EventStarted); err != nil {
					p.event(ag, consensus.EventStarted, drivers.Status{})
				}
				p.finish(ctx, at)
			})
		}
	}
}
