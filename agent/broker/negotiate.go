package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// offer is one candidate's open negotiation stream.
type offer struct {
	provider string
	x        negotiate.Exchange // the negotiation with provider
	w        negotiate.Wire     // seals and opens its messages
	bid      *negotiate.BidMsg
	reasons  []string
	err      error
	cut      bool // the round stopped waiting for the answer (and released it)
	late     bool // cut off by the bid window
}

// negotiate sends CFPs in parallel, awards the best bid and commits the
// agreement; rd records what happened.
func (b *Broker) negotiate(t *tasks.Task, fw *rules.Framework, rt *rules.Task, ranked []rules.Scored, ps Pool, rd *tasks.Round) bool {
	timeout := time.Duration(fw.Placement.BidTimeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(b.d.Ctx, timeout)
	defer cancel()
	cfp := negotiate.CFP{V: negotiate.Version, ID: tasks.NewID(), TaskID: t.ID, Attempt: t.Attempt, Framework: fw.ID(), Task: t.Document, TaskHash: t.Hash, Broker: b.self, Expires: time.Now().Add(timeout)}
	env, err := negotiate.Plain(negotiate.KindCFP, cfp)
	if err != nil {
		rd.Outcome = err.Error()
		return false
	}
	offers := b.callAll(ctx, ranked, env, cfp)
	defer func() {
		for _, o := range offers {
			if o.x != nil {
				_ = o.x.Close()
			}
		}
	}()
	var bids []rules.Bid
	for _, o := range offers {
		switch {
		case o.bid != nil:
			bids = append(bids, rules.Bid{Provider: o.provider, Price: o.bid.Price})
			rd.Bids = append(rd.Bids, tasks.BidRecord{Provider: o.provider, Price: o.bid.Price})
		case o.late:
			rd.Declines = append(rd.Declines, tasks.RuledOut{Provider: o.provider, Reasons: []string{fmt.Sprintf("no answer within %s of the first bid", bidWindow)}})
		case o.err != nil:
			rd.Declines = append(rd.Declines, tasks.RuledOut{Provider: o.provider, Reasons: []string{"unreachable: " + o.err.Error()}})
		default:
			rd.Declines = append(rd.Declines, tasks.RuledOut{Provider: o.provider, Reasons: o.reasons})
			b.view.declined(o.provider, ps.seq[o.provider], o.reasons)
		}
	}
	if len(bids) == 0 {
		rd.Outcome = fmt.Sprintf("no bids from %d candidates", len(offers))
		return false
	}
	order := fw.RankBids(rt, bids, ps.ByID)
	// Losing bidders hold capacity for us until released: release them as
	// soon as a winner confirms, not after the ledger commit.
	released := map[string]bool{}
	release := func(winner string) {
		for _, o := range offers {
			if o.provider == winner || o.x == nil || o.bid == nil || released[o.provider] {
				continue
			}
			released[o.provider] = true
			if rel, err := o.w.Seal(negotiate.KindRelease, negotiate.ReleaseMsg{V: negotiate.Version, CFP: cfp.ID}); err == nil {
				_ = o.x.Send(rel)
			}
		}
	}
	for _, s := range order {
		o := findOffer(offers, s.Provider)
		if released[o.provider] {
			break // a confirmed winner's agreement failed to commit
		}
		if b.award(t, fw, rt, cfp, o, rd, func() { release(o.provider) }) {
			b.view.awarded(o.provider, ps.seq[o.provider], rt.Resources)
			return true
		}
	}
	release("")
	if rd.Outcome == "" {
		rd.Outcome = "no bidder confirmed"
	}
	return false
}

func findOffer(offers []*offer, provider string) *offer {
	for _, o := range offers {
		if o.provider == provider {
			return o
		}
	}
	return &offer{provider: provider}
}

// bidWindow is how long a round waits for the other candidates once one
// has bid. A candidate short of free capacity waits for room before it
// answers (provider.considerWaiting); the round does not wait for it
// while the others hold capacity for this task.
const bidWindow = 25 * time.Millisecond

// callAll sends the CFP (env: its plain envelope) to every candidate at once and returns their
// offers once all have answered, or bidWindow after the first bid:
// candidates still silent then are cut off (late).
func (b *Broker) callAll(ctx context.Context, ranked []rules.Scored, env negotiate.Envelope, cfp negotiate.CFP) []*offer {
	cctx, cut := context.WithCancel(ctx)
	defer cut()
	offers := make([]*offer, len(ranked))
	answered := make(chan *offer, len(ranked))
	var wg sync.WaitGroup
	for i, s := range ranked {
		offers[i] = &offer{provider: s.Provider}
		wg.Add(1)
		go func(o *offer) {
			defer wg.Done()
			b.call(cctx, o, env, cfp)
			answered <- o
		}(offers[i])
	}
	var window <-chan time.Time
	windowShut := false
	for pending := len(offers); pending > 0 && !windowShut; {
		select {
		case o := <-answered:
			pending--
			if o.bid != nil && window == nil {
				window = time.After(bidWindow)
			}
		case <-window:
			windowShut = true
		}
	}
	cut()
	wg.Wait()
	for _, o := range offers {
		if o.cut { // its stream is closed: nothing more to say on it
			o.bid, o.reasons = nil, nil
			if windowShut {
				o.late, o.err = true, nil
			} else if o.err == nil {
				o.err = ctx.Err()
			}
		}
	}
	return offers
}

// call sends the CFP to one candidate and reads its bid or decline; ctx
// ending cuts the wait for the answer. env is the CFP's plain envelope
// (negotiate.Protocol); a candidate of an earlier version that speaks
// only negotiate.ProtocolSigned gets it signed.
func (b *Broker) call(ctx context.Context, o *offer, env negotiate.Envelope, cfp negotiate.CFP) {
	if o.provider == b.self {
		// Negotiating with ourselves: same messages over an in-memory pipe.
		mine, theirs := net.Pipe()
		o.x, o.w = negotiate.StreamExchange(mine), negotiate.WireFor(b.d.Identity, negotiate.Protocol)
		go func() { _ = b.d.Provider.Serve(theirs, b.self, o.w) }()
	} else {
		x, w, err := b.sessions.Open(ctx, o.provider, cfp.ID)
		if err != nil {
			o.err, o.cut = err, ctx.Err() != nil
			return
		}
		o.x, o.w = x, w
		if w.Signed {
			if env, err = w.Seal(negotiate.KindCFP, cfp); err != nil {
				o.err = err
				return
			}
		}
	}
	if err := o.x.Send(env); err != nil {
		o.err = err
		return
	}
	resp, err := o.x.Recv(ctx)
	if err != nil {
		o.err, o.cut = err, errors.Is(err, negotiate.ErrCut)
		return
	}
	switch resp.Kind {
	case negotiate.KindBid:
		var bid negotiate.BidMsg
		if err := o.w.Open(resp, negotiate.KindBid, o.provider, &bid); err != nil {
			o.err = err
			return
		}
		if bid.CFP != cfp.ID || bid.Provider != o.provider || bid.TaskID != cfp.TaskID {
			o.err = fmt.Errorf("%w: bid does not answer cfp %s", negotiate.ErrBadMessage, cfp.ID)
			return
		}
		o.bid = &bid
	case negotiate.KindDecline:
		var d negotiate.DeclineMsg
		if err := o.w.Open(resp, negotiate.KindDecline, o.provider, &d); err != nil {
			o.err = err
			return
		}
		o.reasons = d.Reasons
	default:
		o.err = fmt.Errorf("%w: unexpected %q", negotiate.ErrBadMessage, resp.Kind)
	}
}

// award sends the agreement to the winner, collects its signature and
// commits the agreement to the ledger.
// confirmed runs once the provider has signed, before the commit.
func (b *Broker) award(t *tasks.Task, fw *rules.Framework, rt *rules.Task, cfp negotiate.CFP, o *offer, rd *tasks.Round, confirmed func()) bool {
	if o.x == nil || o.bid == nil {
		return false
	}
	ag := consensus.Agreement{
		V: consensus.PayloadVersion, ID: fmt.Sprintf("%s-a%d", t.ID, t.Attempt), TaskID: t.ID, TaskHash: t.Hash,
		Framework: fw.ID(), Broker: b.self, Provider: o.provider, Submitter: t.Submitter, Attempt: t.Attempt, Price: o.bid.Price,
		LeaseSeconds: int(b.d.Lease / time.Second),
		Resources:    rt.Resources, Driver: o.bid.Driver, Time: time.Now().UTC(),
	}
	if b.billing.Load() {
		// The ledger bills the attempt when it ends: no settlement entry.
		terms := fw.BillTerms(rt)
		ag.V, ag.Bill = consensus.BilledAgreementVersion, &terms
	}
	entry, err := consensus.NewEntry(consensus.TypeAgreement, ag.ID, ag, b.d.Identity)
	if err != nil {
		rd.Outcome = err.Error()
		return false
	}
	aw, err := o.w.Seal(negotiate.KindAward, negotiate.AwardMsg{V: negotiate.Version, CFP: cfp.ID, Agreement: entry.Payload, BrokerSig: entry.Signatures[0].Sig})
	if err != nil || o.x.Send(aw) != nil {
		rd.Outcome = "award not delivered to " + o.provider
		return false
	}
	wait, stop := context.WithTimeout(b.d.Ctx, 30*time.Second)
	resp, err := o.x.Recv(wait)
	stop()
	var conf negotiate.ConfirmMsg
	if err == nil {
		err = o.w.Open(resp, negotiate.KindConfirm, o.provider, &conf)
	}
	if err == nil && o.provider != b.self { // placed on itself: one party, one signature
		entry.Signatures = append(entry.Signatures, consensus.Signature{Signer: o.provider, Sig: conf.ProviderSig})
		slices.SortFunc(entry.Signatures, func(x, y consensus.Signature) int { return cmpString(x.Signer, y.Signer) })
		if verr := entry.Validate(mesh.Verifier{}); verr != nil {
			err = verr
		}
	}
	if err != nil {
		rd.Outcome = fmt.Sprintf("winner %s did not confirm: %v", o.provider, err)
		return false
	}
	confirmed()
	ctx, cancel := context.WithTimeout(b.d.Ctx, 30*time.Second)
	defer cancel()
	rc, err := b.d.Ledger.Commit(ctx, entry)
	if err != nil {
		if ab, serr := o.w.Seal(negotiate.KindAborted, negotiate.AbortedMsg{V: negotiate.Version, CFP: cfp.ID, Reason: err.Error()}); serr == nil {
			_ = o.x.Send(ab)
		}
		rd.Outcome = "agreement not committed: " + err.Error()
		return b.adoptCommitted(t.ID)
	}
	if cm, err := o.w.Seal(negotiate.KindCommitted, negotiate.CommittedMsg{V: negotiate.Version, CFP: cfp.ID, Index: rc.Index}); err == nil {
		_ = o.x.Send(cm)
	}
	rd.Winner, rd.Outcome = o.provider, "placed on "+o.provider
	b.d.Metrics.Round(true)
	b.update(t.ID, func(t *tasks.Task) bool {
		t.AddRound(*rd)
		t.Provider, t.AgreementID, t.Price, t.Bill = ag.Provider, ag.ID, ag.Price, billTerms(&ag)
		if t.State == tasks.StateQueued || t.State == tasks.StateNegotiating {
			t.SetState(tasks.StatePlaced, "agreement "+ag.ID+" committed", time.Now().UTC())
		}
		return true
	})
	return true
}
