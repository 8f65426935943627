package provider

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/consensus"
)

// Attempt leases (agent/PROTOCOL.md, "Leases"). An agreement grants its
// provider a lease of LeaseSeconds on the attempt. The provider renews it
// with the broker every lease/4 (op "renew" on /pcm/task/1.0.0); its lease
// then runs until the renewal's send time plus the lease. A provider that
// could not renew before its lease ends stops the attempt and records no
// outcome for it (self-fencing). The broker declares the attempt lost only
// when it has heard no renewal for the lease plus half of it (margin for
// clock rates and scheduling), so a provider always fences first; the
// ledger then refuses a new agreement until the attempt ended lost or
// failed, and counts only the first final event of an attempt.

// leaseOf is an agreement's lease.
func leaseOf(ag consensus.Agreement) time.Duration {
	if ag.LeaseSeconds > 0 {
		return time.Duration(ag.LeaseSeconds) * time.Second
	}
	return negotiate.DefaultLease
}

// renewLoop renews the leases of the attempts running here, by broker,
// and fences those whose lease ran out.
func (p *Provider) renewLoop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		due := map[string][]*attempt{}
		p.mu.Lock()
		for _, at := range p.attempts {
			switch {
			case at.leaseExpired(now):
				at.fence()
			case now.After(at.nextRenew()):
				due[at.ag.Broker] = append(due[at.ag.Broker], at)
			}
		}
		p.mu.Unlock()
		for broker, ats := range due {
			for _, at := range ats {
				at.renewing(now)
			}
			p.d.Go(func() { p.renewWith(ctx, broker, ats, now) })
		}
	}
}

// renewWith renews ats with their broker; sent is when the request left.
func (p *Provider) renewWith(ctx context.Context, broker string, ats []*attempt, sent time.Time) {
	ids := make([]string, len(ats))
	for i, at := range ats {
		ids[i] = at.ag.ID
	}
	rctx, cancel := context.WithTimeout(ctx, leaseOf(ats[0].ag)/4)
	current, err := p.d.Renew(rctx, broker, ids)
	cancel()
	if err != nil {
		p.d.Log.Debug("renew attempt leases", "broker", broker, "err", err)
		return // retried at the next tick; fenced if the lease runs out
	}
	for _, at := range ats {
		if slices.Contains(current, at.ag.ID) {
			at.renewed(sent)
			continue
		}
		p.d.Log.Warn("broker says the attempt no longer counts; stopping it", "agreement", at.ag.ID, "broker", broker)
		at.fence()
	}
}

// attemptLease is the provider's view of an attempt's lease.
type attemptLease struct {
	mu       sync.Mutex
	lease    time.Duration
	until    time.Time // the lease ends
	tryAfter time.Time // next renewal
	fenced   bool
}

func (at *attempt) startLease(now time.Time) {
	at.l.mu.Lock()
	defer at.l.mu.Unlock()
	at.l.lease = leaseOf(at.ag)
	at.l.until = now.Add(at.l.lease)
	at.l.tryAfter = now.Add(at.l.lease / 4)
}

func (at *attempt) leaseExpired(now time.Time) bool {
	at.l.mu.Lock()
	defer at.l.mu.Unlock()
	return !at.l.until.IsZero() && now.After(at.l.until)
}

func (at *attempt) nextRenew() time.Time {
	at.l.mu.Lock()
	defer at.l.mu.Unlock()
	return at.l.tryAfter
}

func (at *attempt) renewing(now time.Time) {
	at.l.mu.Lock()
	defer at.l.mu.Unlock()
	at.l.tryAfter = now.Add(at.l.lease / 8) // retry soon if this one fails
}

func (at *attempt) renewed(sent time.Time) {
	at.l.mu.Lock()
	defer at.l.mu.Unlock()
	if u := sent.Add(at.l.lease); u.After(at.l.until) {
		at.l.until = u
	}
	at.l.tryAfter = sent.Add(at.l.lease / 4)
}

// fence stops the attempt because its lease is gone: its outcome is not
// recorded, the broker declares it lost and places the task again.
func (at *attempt) fence() {
	at.l.mu.Lock()
	at.l.fenced = true
	at.l.mu.Unlock()
	at.halt("lease expired: no renewal from the broker in time; the attempt is stopped and does not count")
}

// countsNow reports whether the attempt may still record an outcome.
func (at *attempt) countsNow() bool {
	at.l.mu.Lock()
	defer at.l.mu.Unlock()
	return !at.l.fenced && (at.l.until.IsZero() || time.Now().Before(at.l.until))
}
