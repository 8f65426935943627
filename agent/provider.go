package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// holdTTL is how long a bid's tentative reservation lives without an award.
const holdTTL = 10 * time.Second

// confirmedTTL is how long a confirmed agreement waits for its commit.
const confirmedTTL = 2 * time.Minute

// provider is the agent's provider side: it answers CFPs, holds tentative
// reservations, and runs committed agreements through its drivers.
type provider struct {
	a      *Agent
	parsed parseCache // CFP documents, by hash

	mu        sync.Mutex
	holds     map[string]*hold // by CFP id
	confirmed map[string]*hold // by agreement id, until committed
	seenCFP   map[string]time.Time
	attempts  map[string]*attempt // by agreement id
	byTask    map[string]string   // task id -> agreement id running here
}

type hold struct {
	cfp       CFP
	task      *rules.Task
	res       map[string]float64
	price     int64
	driver    string
	expires   time.Time
	agreement *consensus.Agreement
	started   bool
}

type attempt struct {
	ag     consensus.Agreement
	driver drivers.Driver
	specID string
	stop   chan struct{}
	once   sync.Once
	reason string
	l      attemptLease
}

func newProvider(a *Agent) *provider {
	return &provider{a: a, holds: map[string]*hold{}, confirmed: map[string]*hold{}, seenCFP: map[string]time.Time{}, attempts: map[string]*attempt{}, byTask: map[string]string{}}
}

// heldLocked sums the resources of live tentative reservations; p.mu held.
func (p *provider) heldLocked(now time.Time) map[string]float64 {
	sum := map[string]float64{}
	for _, m := range []map[string]*hold{p.holds, p.confirmed} {
		for id, h := range m {
			if now.After(h.expires) {
				delete(m, id)
				continue
			}
			for k, v := range h.res {
				sum[k] += v
			}
		}
	}
	return sum
}

// selfLocked is this provider as the rules see it, with held capacity
// removed; p.mu held.
func (p *provider) selfLocked(fw *rules.Framework, now time.Time) *rules.Provider {
	ad := p.a.capacityAdvert()
	free := map[string]float64{}
	for k, v := range ad.Free {
		free[k] = v
	}
	for k, v := range p.heldLocked(now) {
		free[k] = max(0, free[k]-v)
	}
	var names []string
	for _, d := range ad.Drivers {
		names = append(names, d.Name)
	}
	return &rules.Provider{
		ID: p.a.ID(), Drivers: names, Attrs: ad.Attrs, Frameworks: p.a.fws.adheredIDs(),
		Total: ad.Total, Free: free, Prices: p.a.pricesFor(fw), Running: len(p.attempts),
	}
}

// selfView is selfLocked for callers that do not hold p.mu.
func (p *provider) selfView(fw *rules.Framework) *rules.Provider {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.selfLocked(fw, time.Now())
}

func (p *provider) running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.attempts)
}

// conn is a negotiation stream: a libp2p stream, or an in-memory pipe
// when the broker is also the provider (libp2p does not dial itself).
type conn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
}

// handleNegotiate serves one /pcm/negotiate/1.0.0 stream.
func (p *provider) handleNegotiate(s network.Stream) {
	if err := p.serve(s, s.Conn().RemotePeer().String()); err != nil {
		_ = s.Reset()
	}
}

// serve runs the provider side of one negotiation with remote.
func (p *provider) serve(s conn, remote string) error {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(time.Minute))
	err := p.negotiate(s, bufio.NewReaderSize(s, 4096), remote)
	if err != nil {
		p.a.log.Info("negotiation refused", "peer", remote, "err", err)
	}
	return err
}

func (p *provider) negotiate(s conn, r *bufio.Reader, remote string) error {
	env, err := readEnv(r)
	if err != nil {
		return err
	}
	var cfp CFP
	if err := open(env, KindCFP, remote, &cfp); err != nil {
		return err
	}
	now := time.Now()
	if cfp.Broker != env.Signer {
		return fmt.Errorf("%w: cfp broker %s is not its signer %s", errBadMessage, cfp.Broker, env.Signer)
	}
	if now.After(cfp.Expires) || cfp.Expires.After(now.Add(5*time.Minute)) {
		return fmt.Errorf("%w: cfp %s expires %s", errExpired, cfp.ID, cfp.Expires.Format(time.RFC3339Nano))
	}
	if !p.firstSight(cfp.ID, cfp.Expires) {
		return fmt.Errorf("%w: cfp %s replayed", errBadMessage, cfp.ID)
	}
	h, reasons := p.consider(cfp, now)
	if h == nil {
		d, err := seal(p.a.deps.Identity, KindDecline, DeclineMsg{V: protocolVersion, CFP: cfp.ID, Provider: p.a.ID(), Reasons: reasons})
		if err != nil {
			return err
		}
		return writeEnv(s, d)
	}
	defer p.dropHold(cfp.ID)
	bid, err := seal(p.a.deps.Identity, KindBid, BidMsg{V: protocolVersion, CFP: cfp.ID, TaskID: cfp.TaskID, Provider: p.a.ID(), Price: h.price, Driver: h.driver, Expires: h.expires})
	if err != nil {
		return err
	}
	if err := writeEnv(s, bid); err != nil {
		return err
	}
	env, err = readEnvBy(s, r, h.expires)
	if err != nil {
		return err
	}
	if env.Kind == KindRelease {
		return nil
	}
	ag, err := p.checkAward(env, cfp, h)
	if err != nil {
		return err
	}
	sig, err := p.a.deps.Identity.Sign(consensus.DomainAgreement, ag.raw)
	if err != nil {
		return err
	}
	h.agreement = &ag.Agreement
	p.mu.Lock()
	h.expires = time.Now().Add(confirmedTTL)
	p.confirmed[ag.ID] = h
	delete(p.holds, cfp.ID)
	p.mu.Unlock()
	conf, err := seal(p.a.deps.Identity, KindConfirm, ConfirmMsg{V: protocolVersion, CFP: cfp.ID, ProviderSig: sig})
	if err != nil {
		return err
	}
	if err := writeEnv(s, conf); err != nil {
		return err
	}
	env, err = readEnvBy(s, r, time.Now().Add(confirmedTTL))
	if err != nil {
		return err // the ledger subscription still starts it if it commits
	}
	if env.Kind == KindAborted {
		// The broker gave up, but an agreement whose proposal timed out
		// may still commit: keep the confirmed hold until it expires, so
		// the ledger subscription starts the task if it does.
		return nil
	}
	var cm CommittedMsg
	if err := open(env, KindCommitted, cfp.Broker, &cm); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.a.ledgerHas(ctx, ag.ID, cm.Index); err != nil {
		return fmt.Errorf("agreement %s announced at index %d: %w", ag.ID, cm.Index, err)
	}
	p.commit(ag.ID)
	return nil
}

// firstSight records a CFP id; false when it was seen before.
func (p *provider) firstSight(id string, expires time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for k, exp := range p.seenCFP {
		if now.After(exp) {
			delete(p.seenCFP, k)
		}
	}
	if _, seen := p.seenCFP[id]; seen {
		return false
	}
	p.seenCFP[id] = expires
	return true
}

// consider evaluates a CFP and, when this provider can take the task,
// reserves its resources tentatively. It returns the hold, or the reasons
// to decline.
func (p *provider) consider(cfp CFP, now time.Time) (*hold, []string) {
	task, err := p.parsed.parse("cfp "+cfp.ID, cfp.Task)
	if err != nil {
		return nil, []string{"task: " + err.Error()}
	}
	if task.Hash() != cfp.TaskHash {
		return nil, []string{"task: document does not match task_hash"}
	}
	fw, err := p.a.fws.resolve(cfp.Framework)
	if err != nil || fw.ID() != cfp.Framework {
		return nil, []string{fmt.Sprintf("framework: %s is not known to this provider", cfp.Framework)}
	}
	if !p.a.fws.adheres(fw.ID()) {
		return nil, []string{fmt.Sprintf("framework: this provider does not adhere to %s@%s", fw.Name, fw.Version)}
	}
	// Evaluate and reserve under one lock so two CFPs cannot both take
	// the last free capacity.
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, running := p.byTask[cfp.TaskID]; running {
		return nil, []string{"task: an attempt of this task is still running here"}
	}
	ev := fw.Evaluate(task, p.selfLocked(fw, now), now)
	if !ev.OK {
		var rs []string
		for _, f := range ev.Failures {
			rs = append(rs, f.String())
		}
		return nil, rs
	}
	drv := p.a.pickDriver(task)
	if drv == "" {
		return nil, []string{fmt.Sprintf("driver: no enabled driver runs %q tasks here", task.Driver)}
	}
	if !p.a.driverFiles(drv) && (task.Outputs != nil || len(task.Inputs) > 0) {
		return nil, []string{fmt.Sprintf("driver: %s cannot stage inputs or collect outputs; local, exec and slurm can", drv)}
	}
	h := &hold{cfp: cfp, task: task, res: task.Resources, price: ev.Quote, driver: drv, expires: now.Add(holdTTL)}
	p.holds[cfp.ID] = h
	return h, nil
}

func (p *provider) dropHold(cfpID string) {
	p.mu.Lock()
	delete(p.holds, cfpID)
	p.mu.Unlock()
}

type rawAgreement struct {
	consensus.Agreement
	raw []byte
}

// checkAward verifies that an award matches this provider's bid.
func (p *provider) checkAward(env Envelope, cfp CFP, h *hold) (rawAgreement, error) {
	var aw AwardMsg
	if err := open(env, KindAward, cfp.Broker, &aw); err != nil {
		return rawAgreement{}, err
	}
	if aw.CFP != cfp.ID {
		return rawAgreement{}, fmt.Errorf("%w: award for unknown cfp %q", errBadMessage, aw.CFP)
	}
	var ag consensus.Agreement
	if err := json.Unmarshal(aw.Agreement, &ag); err != nil {
		return rawAgreement{}, fmt.Errorf("%w: agreement: %w", errBadMessage, err)
	}
	switch {
	case ag.Provider != p.a.ID(), ag.Broker != cfp.Broker, ag.TaskID != cfp.TaskID, ag.TaskHash != cfp.TaskHash,
		ag.Attempt != cfp.Attempt, ag.Price != h.price, ag.Framework != cfp.Framework, ag.Driver != h.driver:
		return rawAgreement{}, fmt.Errorf("%w: agreement %s does not match the bid", errBadMessage, ag.ID)
	}
	if err := (mesh.Verifier{}).Verify(cfp.Broker, consensus.DomainAgreement, aw.Agreement, aw.BrokerSig); err != nil {
		return rawAgreement{}, fmt.Errorf("%w: %w", errBadMessage, err)
	}
	return rawAgreement{Agreement: ag, raw: aw.Agreement}, nil
}

// commit starts a committed agreement once (from the stream or the ledger).
// The confirmed hold keeps counting the task's resources until the driver
// has admitted it and the fingerprint shows it, so no CFP in between can
// take the same capacity.
func (p *provider) commit(agreementID string) {
	p.mu.Lock()
	h, ok := p.confirmed[agreementID]
	if !ok || h.agreement == nil || h.started {
		p.mu.Unlock()
		return
	}
	h.started = true
	h.expires = time.Now().Add(confirmedTTL)
	ag := *h.agreement
	drv := p.a.drivers[h.driver]
	at := &attempt{ag: ag, driver: drv, specID: ag.ID, stop: make(chan struct{})}
	at.startLease(time.Now())
	p.attempts[ag.ID] = at
	p.byTask[ag.TaskID] = ag.ID
	p.mu.Unlock()
	p.a.goLoop(func() { p.run(at, h.task) })
}

// started drops the confirmed hold once the driver counts the task.
func (p *provider) started(agreementID string) {
	if err := p.a.refreshFingerprints(p.a.runCtx); err != nil {
		p.a.log.Warn("fingerprint after start", "err", err)
	}
	p.mu.Lock()
	delete(p.confirmed, agreementID)
	p.mu.Unlock()
}

// onRecord reacts to ledger records that concern this provider.
func (p *provider) onRecord(r consensus.Record) {
	if r.Type != consensus.TypeAgreement {
		return
	}
	var ag consensus.Agreement
	if json.Unmarshal(r.Payload, &ag) != nil {
		return
	}
	if ag.Provider == p.a.ID() {
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
func (p *provider) run(at *attempt, task *rules.Task) {
	ctx, cancel := context.WithCancel(p.a.runCtx)
	defer cancel()
	defer func() {
		p.mu.Lock()
		delete(p.attempts, at.ag.ID)
		if p.byTask[at.ag.TaskID] == at.ag.ID {
			delete(p.byTask, at.ag.TaskID)
		}
		p.mu.Unlock()
		p.a.republishIfMoved()
	}()
	spec := taskSpec(at.specID, task)
	err := p.a.prepareFiles(ctx, at.ag, task, &spec)
	if err == nil {
		_, err = at.driver.Start(ctx, spec)
	}
	p.started(at.ag.ID)
	if err != nil && p.a.runCtx.Err() != nil {
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
func (p *provider) finish(ctx context.Context, at *attempt) {
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
	if err != nil && p.a.runCtx.Err() != nil {
		return // the agent is closing; the task runs on and is recovered at the next start
	}
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
		p.a.log.Warn("attempt ended after its lease; outcome not recorded", "agreement", at.ag.ID, "state", st.State)
		return
	}
	ref, err := p.a.collectResults(ctx, at, ev)
	if err != nil {
		ev, st.Message = consensus.EventFailed, "outputs: "+err.Error()
	}
	p.eventWith(at.ag, ev, st, ref)
}

// event proposes a task event signed by this provider, retrying until the
// ledger takes it (ids are deterministic, so retries are idempotent).
func (p *provider) event(ag consensus.Agreement, kind string, st drivers.Status) {
	p.eventWith(ag, kind, st, nil)
}

// eventWith is event with the attempt's results archive.
func (p *provider) eventWith(ag consensus.Agreement, kind string, st drivers.Status, res *consensus.ResultsRef) {
	p.a.metrics.attempts.WithLabelValues(kind).Inc()
	if p.a.cfg.Faults.DropFinalEvents && kind != consensus.EventStarted {
		p.a.log.Warn("fault injection: dropping ledger write", "event", ag.ID+"/"+kind)
		return
	}
	te := consensus.TaskEvent{
		V: consensus.PayloadVersion, ID: ag.ID + "/" + kind, TaskID: ag.TaskID, AgreementID: ag.ID,
		Event: kind, Author: p.a.ID(), ExitCode: st.ExitCode, Message: truncate(st.Message, 512),
		Usage: consensus.Usage{CPUSeconds: st.Usage.CPUSeconds, WallSeconds: st.Usage.WallSeconds}, Results: res, Time: time.Now().UTC(),
	}
	e, err := consensus.NewEntry(consensus.TypeTaskEvent, te.ID, te, p.a.deps.Identity)
	if err != nil {
		p.a.log.Error("task event", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := p.a.proposeRetry(ctx, e); err != nil {
		p.a.log.Error("record task event", "event", te.ID, "err", err)
	}
}

// cancel stops a task running here.
func (p *provider) cancel(taskID, by string) bool {
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

// recover reattaches to driver tasks that survived an agent restart: each
// driver task id is an agreement id; running ones are waited for again and
// finished ones get their final event (event ids make this idempotent).
func (p *provider) recover(ctx context.Context) {
	for _, name := range p.a.order {
		d := p.a.drivers[name]
		sts, err := d.Recover(ctx)
		if err != nil {
			p.a.log.Warn("recover driver tasks", "driver", name, "err", err)
			continue
		}
		for _, st := range sts {
			rec, err := p.a.ledger.Entry(ctx, st.ID)
			if err != nil || rec.Type != consensus.TypeAgreement {
				continue
			}
			var ag consensus.Agreement
			if json.Unmarshal(rec.Payload, &ag) != nil || ag.Provider != p.a.ID() {
				continue
			}
			if _, err := p.a.ledger.Entry(ctx, ag.ID+"/"+consensus.EventSucceeded); err == nil {
				continue
			}
			at := &attempt{ag: ag, driver: d, specID: st.ID, stop: make(chan struct{})}
			at.startLease(time.Now()) // the broker's answer to the first renewal says whether it still counts
			p.mu.Lock()
			p.attempts[ag.ID] = at
			p.byTask[ag.TaskID] = ag.ID
			p.mu.Unlock()
			p.a.goLoop(func() {
				defer func() {
					p.mu.Lock()
					delete(p.attempts, ag.ID)
					delete(p.byTask, ag.TaskID)
					p.mu.Unlock()
				}()
				if _, err := p.a.ledger.Entry(ctx, ag.ID+"/"+consensus.EventStarted); err != nil {
					p.event(ag, consensus.EventStarted, drivers.Status{})
				}
				p.finish(ctx, at)
			})
		}
	}
}
