package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
)

// HandleNegotiate serves one negotiation stream: a session of many
// negotiations (negotiate.Protocol) or a single one of an earlier agent
// (negotiate.ProtocolSigned).
func (p *Provider) HandleNegotiate(s network.Stream) {
	remote := s.Conn().RemotePeer().String()
	if s.Protocol() == negotiate.ProtocolSigned {
		if err := p.Serve(s, remote, negotiate.WireFor(p.d.Identity, negotiate.ProtocolSigned)); err != nil {
			_ = s.Reset()
		}
		return
	}
	if !p.openSession(remote) {
		p.d.Log.Info("negotiation refused", "peer", remote, "err", fmt.Sprintf("more than %d sessions open", maxSessionsPerBroker))
		_ = s.Reset()
		return
	}
	defer p.closeSession(remote)
	w := negotiate.WireFor(p.d.Identity, negotiate.Protocol)
	sess := negotiate.NewSession(s, s.Reset, false)
	stop := context.AfterFunc(p.d.Ctx, func() { _ = sess.Close() })
	defer stop()
	_ = sess.Serve(func(x negotiate.Exchange) {
		defer x.Close()
		if err := p.negotiate(x, remote, w); err != nil {
			p.d.Log.Info("negotiation refused", "peer", remote, "err", err)
			if errors.Is(err, negotiate.ErrBadMessage) || errors.Is(err, negotiate.ErrExpired) {
				// A broker that breaks the protocol loses its session, as it
				// would its stream.
				sess.Reset(err)
			}
		}
	})
}

// maxSessionsPerBroker bounds the negotiation sessions one broker may
// hold open here (it needs one; a few cover a reconnect), so a broker
// cannot multiply negotiation.MaxActive.
const maxSessionsPerBroker = 4

func (p *Provider) openSession(broker string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[broker] >= maxSessionsPerBroker {
		return false
	}
	p.sessions[broker]++
	return true
}

func (p *Provider) closeSession(broker string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[broker]--; p.sessions[broker] <= 0 {
		delete(p.sessions, broker)
	}
}

// Serve runs the provider side of one negotiation with remote on a stream
// of its own (an earlier agent's, or the broker's pipe to itself); w
// seals and opens its messages.
func (p *Provider) Serve(s negotiate.Conn, remote string, w negotiate.Wire) error {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(time.Minute))
	err := p.negotiate(negotiate.StreamExchange(s), remote, w)
	if err != nil {
		p.d.Log.Info("negotiation refused", "peer", remote, "err", err)
	}
	return err
}

// recv is x's next message, waiting until deadline at most.
func (p *Provider) recv(x negotiate.Exchange, deadline time.Time) (negotiate.Envelope, error) {
	ctx, cancel := context.WithDeadline(p.d.Ctx, deadline)
	defer cancel()
	return x.Recv(ctx)
}

func (p *Provider) negotiate(x negotiate.Exchange, remote string, w negotiate.Wire) error {
	env, err := p.recv(x, time.Now().Add(time.Minute))
	if err != nil {
		return err
	}
	var cfp negotiate.CFP
	if err := w.Open(env, negotiate.KindCFP, remote, &cfp); err != nil {
		return err
	}
	now := time.Now()
	if cfp.Broker != remote {
		return fmt.Errorf("%w: cfp broker %s is not its sender %s", negotiate.ErrBadMessage, cfp.Broker, remote)
	}
	if now.After(cfp.Expires) || cfp.Expires.After(now.Add(5*time.Minute)) {
		return fmt.Errorf("%w: cfp %s expires %s", negotiate.ErrExpired, cfp.ID, cfp.Expires.Format(time.RFC3339Nano))
	}
	if !p.firstSight(cfp.ID, cfp.Expires) {
		return fmt.Errorf("%w: cfp %s replayed", negotiate.ErrBadMessage, cfp.ID)
	}
	h, reasons := p.considerWaiting(cfp)
	if h == nil {
		d, err := w.Seal(negotiate.KindDecline, negotiate.DeclineMsg{V: negotiate.Version, CFP: cfp.ID, Provider: p.self, Reasons: reasons})
		if err != nil {
			return err
		}
		return x.Send(d)
	}
	defer p.dropHold(cfp.ID)
	bid, err := w.Seal(negotiate.KindBid, negotiate.BidMsg{V: negotiate.Version, CFP: cfp.ID, TaskID: cfp.TaskID, Provider: p.self, Price: h.price, Driver: h.driver, Expires: h.expires})
	if err != nil {
		return err
	}
	if err := x.Send(bid); err != nil {
		return err
	}
	env, err = p.recv(x, h.expires)
	if err != nil {
		return err
	}
	if env.Kind == negotiate.KindRelease {
		return nil
	}
	ag, err := p.checkAward(w, env, cfp, h)
	if err != nil {
		return err
	}
	sig, err := p.d.Identity.Sign(consensus.DomainAgreement, ag.raw)
	if err != nil {
		return err
	}
	h.agreement = &ag.Agreement
	p.mu.Lock()
	h.expires = time.Now().Add(confirmedTTL)
	p.confirmed[ag.ID] = h
	delete(p.holds, cfp.ID)
	p.mu.Unlock()
	conf, err := w.Seal(negotiate.KindConfirm, negotiate.ConfirmMsg{V: negotiate.Version, CFP: cfp.ID, ProviderSig: sig})
	if err != nil {
		return err
	}
	if err := x.Send(conf); err != nil {
		return err
	}
	env, err = p.recv(x, time.Now().Add(confirmedTTL))
	if err != nil {
		return err // the ledger subscription still starts it if it commits
	}
	if env.Kind == negotiate.KindAborted || env.Kind == negotiate.KindRelease {
		// The broker gave up, but an agreement whose proposal timed out
		// may still commit: keep the confirmed hold until it expires, so
		// the ledger subscription starts the task if it does.
		return nil
	}
	var cm negotiate.CommittedMsg
	if err := w.Open(env, negotiate.KindCommitted, cfp.Broker, &cm); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.d.Ledger.Has(ctx, ag.ID, cm.Index); err != nil {
		return fmt.Errorf("agreement %s announced at index %d: %w", ag.ID, cm.Index, err)
	}
	p.commit(ag.ID)
	return nil
}

// firstSight records a CFP id; false when it was seen before.
func (p *Provider) firstSight(id string, expires time.Time) bool {
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

// Queueing a CFP for capacity (see considerWaiting).
const (
	// maxQueueWait bounds how long a CFP waits here for room.
	maxQueueWait = 1500 * time.Millisecond
	// answerMargin is left before the CFP expires to answer in time.
	answerMargin = 300 * time.Millisecond
)

// considerWaiting is consider, but a CFP that fails only for want of free
// capacity, and would fit this provider's total, waits here for room (a
// tentative hold of another negotiation dropped, an attempt ended) up to
// maxQueueWait and until shortly before it expires, instead of being
// declined: concurrent negotiations hold capacity on paper for
// milliseconds, and a decline would send the task into a backoff of its
// broker while the capacity is free again (issue 13, phantom capacity).
func (p *Provider) considerWaiting(cfp negotiate.CFP) (*hold, []string) {
	until := time.Now().Add(maxQueueWait)
	if last := cfp.Expires.Add(-answerMargin); last.Before(until) {
		until = last
	}
	for {
		h, reasons, room := p.consider(cfp, time.Now())
		if h != nil || room == nil {
			return h, reasons
		}
		left := time.Until(until)
		if left <= 0 {
			return nil, reasons
		}
		t := time.NewTimer(left)
		select {
		case <-room:
			t.Stop()
		case <-t.C:
			return nil, reasons
		case <-p.d.Ctx.Done():
			t.Stop()
			return nil, reasons
		}
	}
}

// consider evaluates a CFP and, when this provider can take the task,
// reserves its resources tentatively. It returns the hold, or the reasons
// to decline; with them, when only free capacity is short and the task
// fits this provider's total, a channel closed when capacity may free.
func (p *Provider) consider(cfp negotiate.CFP, now time.Time) (*hold, []string, <-chan struct{}) {
	task, err := p.parsed.parse("cfp "+cfp.ID, cfp.Task)
	if err != nil {
		return nil, []string{"task: " + err.Error()}, nil
	}
	if task.Hash() != cfp.TaskHash {
		return nil, []string{"task: document does not match task_hash"}, nil
	}
	fw, err := p.d.Frameworks.Resolve(cfp.Framework)
	if err != nil || fw.ID() != cfp.Framework {
		return nil, []string{fmt.Sprintf("framework: %s is not known to this provider", cfp.Framework)}, nil
	}
	if !p.d.Frameworks.Adheres(fw.ID()) {
		return nil, []string{fmt.Sprintf("framework: this provider does not adhere to %s@%s", fw.Name, fw.Version)}, nil
	}
	// Evaluate and reserve under one lock so two CFPs cannot both take
	// the last free capacity.
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, running := p.byTask[cfp.TaskID]; running {
		return nil, []string{"task: an attempt of this task is still running here"}, nil
	}
	self := p.selfLocked(fw, now)
	ev := fw.Evaluate(task, self, now)
	if !ev.OK {
		var rs []string
		onlyCapacity := true
		for _, f := range ev.Failures {
			rs = append(rs, f.String())
			onlyCapacity = onlyCapacity && f.Rule == "capacity"
		}
		if onlyCapacity && len(p.holds) > 0 {
			// Short only because of other negotiations' tentative holds?
			for _, h := range p.holds {
				for k, v := range h.res {
					self.Free[k] += v
				}
			}
			if fw.Evaluate(task, self, now).OK {
				return nil, rs, p.freed
			}
		}
		return nil, rs, nil
	}
	drv := p.pickDriver(task)
	if drv == "" {
		return nil, []string{fmt.Sprintf("driver: no enabled driver runs %q tasks here", task.Driver)}, nil
	}
	if !p.d.Files.CanStage(drv) && (task.Outputs != nil || len(task.Inputs) > 0) {
		return nil, []string{fmt.Sprintf("driver: %s cannot stage inputs or collect outputs; local, exec and slurm can", drv)}, nil
	}
	h := &hold{cfp: cfp, task: task, res: task.Resources, price: ev.Quote, driver: drv, expires: now.Add(holdTTL)}
	p.holds[cfp.ID] = h
	return h, nil, nil
}

func (p *Provider) dropHold(cfpID string) {
	p.mu.Lock()
	if _, held := p.holds[cfpID]; held {
		delete(p.holds, cfpID)
		p.signalFreedLocked()
	}
	p.mu.Unlock()
}

type rawAgreement struct {
	consensus.Agreement
	raw []byte
}

// checkAward verifies that an award matches this provider's bid.
func (p *Provider) checkAward(w negotiate.Wire, env negotiate.Envelope, cfp negotiate.CFP, h *hold) (rawAgreement, error) {
	var aw negotiate.AwardMsg
	if err := w.Open(env, negotiate.KindAward, cfp.Broker, &aw); err != nil {
		return rawAgreement{}, err
	}
	if aw.CFP != cfp.ID {
		return rawAgreement{}, fmt.Errorf("%w: award for unknown cfp %q", negotiate.ErrBadMessage, aw.CFP)
	}
	var ag consensus.Agreement
	if err := json.Unmarshal(aw.Agreement, &ag); err != nil {
		return rawAgreement{}, fmt.Errorf("%w: agreement: %w", negotiate.ErrBadMessage, err)
	}
	switch {
	case ag.Provider != p.self, ag.Broker != cfp.Broker, ag.TaskID != cfp.TaskID, ag.TaskHash != cfp.TaskHash,
		ag.Attempt != cfp.Attempt, ag.Price != h.price, ag.Framework != cfp.Framework, ag.Driver != h.driver:
		return rawAgreement{}, fmt.Errorf("%w: agreement %s does not match the bid", negotiate.ErrBadMessage, ag.ID)
	}
	if err := p.checkBillTerms(&ag, cfp, h); err != nil {
		return rawAgreement{}, err
	}
	if err := (mesh.Verifier{}).Verify(cfp.Broker, consensus.DomainAgreement, aw.Agreement, aw.BrokerSig); err != nil {
		return rawAgreement{}, fmt.Errorf("%w: %w", negotiate.ErrBadMessage, err)
	}
	return rawAgreement{Agreement: ag, raw: aw.Agreement}, nil
}

// checkBillTerms accepts an agreement without billing terms (settled by
// the broker's settlement entry) or one whose terms are the framework's
// settlement section for the task: the provider signs the terms it is
// paid by.
func (p *Provider) checkBillTerms(ag *consensus.Agreement, cfp negotiate.CFP, h *hold) error {
	switch {
	case ag.V == consensus.PayloadVersion && ag.Bill == nil:
		return nil
	case !ag.Billed():
		return fmt.Errorf("%w: agreement %s: \"v\" %d with bill %v; billing terms go with \"v\": %d", negotiate.ErrBadMessage, ag.ID, ag.V, ag.Bill != nil, consensus.BilledAgreementVersion)
	}
	fw, err := p.d.Frameworks.Resolve(cfp.Framework)
	if err != nil {
		return fmt.Errorf("%w: agreement %s: framework: %w", negotiate.ErrBadMessage, ag.ID, err)
	}
	if want := fw.BillTerms(h.task); *ag.Bill != want {
		return fmt.Errorf("%w: agreement %s bills %+v; the framework's settlement section says %+v", negotiate.ErrBadMessage, ag.ID, *ag.Bill, want)
	}
	return nil
}
