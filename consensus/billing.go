package consensus

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// How long a leader trusts its last poll of the replicas' versions.
const (
	billingYesTTL = 30 * time.Second
	billingNoTTL  = 5 * time.Second
)

// billGate caches a leader's answer to "does every replica read billed
// agreements?".
type billGate struct {
	mu    sync.Mutex // held while polling, so concurrent proposals poll once
	ok    bool
	until time.Time
	why   string // the replica that does not, for the refusal
}

// Billing says whether brokers may propose billed agreements
// (BilledAgreementVersion): every replica of the ledger, voter or not,
// applies them. The leader answers from a poll of its replicas' status
// (kept 30 s, a "no" 5 s); other nodes ask it. Any failure answers false:
// the broker then records a settlement entry as before.
func (l *Ledger) Billing(ctx context.Context) bool {
	ok, err := l.billing(ctx, 0)
	return err == nil && ok
}

func (l *Ledger) billing(ctx context.Context, hops int) (bool, error) {
	if l.closed() {
		return false, ErrClosed
	}
	if l.IsLeader() {
		ok, _ := l.billingOK(ctx)
		return ok, nil
	}
	target := l.forwardTarget()
	if target == "" || hops >= maxHops {
		return false, fmt.Errorf("billing: no leader known: %w", ErrNotLeader)
	}
	resp, err := l.call(ctx, target, request{Op: opBilling, Hops: hops + 1})
	if err != nil {
		return false, err
	}
	return resp.Billing, nil
}

// billingOK is the leader's cached answer, and why not.
func (l *Ledger) billingOK(ctx context.Context) (bool, string) {
	g := &l.bill
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Now().Before(g.until) {
		return g.ok, g.why
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	m, err := l.members(pctx, 0)
	g.ok, g.why = err == nil, ""
	if err != nil {
		g.why = err.Error()
	}
	for _, r := range m.Replicas {
		switch {
		case r.Error != "":
			g.ok, g.why = false, fmt.Sprintf("replica %s did not answer: %s", shortID(r.ID), r.Error)
		case r.Reads < BilledAgreementVersion:
			g.ok, g.why = false, fmt.Sprintf("replica %s runs an earlier version that does not read them", shortID(r.ID))
		}
	}
	ttl := billingYesTTL
	if !g.ok {
		ttl = billingNoTTL
	}
	if ctx.Err() == nil {
		g.until = time.Now().Add(ttl)
	}
	return g.ok, g.why
}

// checkBilled refuses, on the leader, a billed agreement while some
// replica would not apply it.
func (l *Ledger) checkBilled(ctx context.Context, p payload) error {
	a, ok := p.(*Agreement)
	if !ok || !a.Billed() {
		return nil
	}
	if ok, why := l.billingOK(ctx); !ok {
		return fmt.Errorf("agreement %q carries billing terms, but not every ledger replica reads them yet (%s); propose it without terms (\"v\": 1) and settle the attempt with a settlement entry: %w", a.ID, why, ErrRejected)
	}
	return nil
}
