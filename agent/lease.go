package agent

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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

// DefaultLease is an attempt's lease when the config sets none.
const DefaultLease = 30 * time.Second

// leaseMargin is how much longer than the lease the broker waits.
func leaseMargin(lease time.Duration) time.Duration { return lease / 2 }

// brokerLeases is the broker's record of its attempts' last renewals.
type brokerLeases struct {
	mu       sync.Mutex
	renewed  map[string]time.Time // agreement id → last renewal received
	declared map[string]bool      // agreement ids declared lost (once)
}

func newBrokerLeases() *brokerLeases {
	return &brokerLeases{renewed: map[string]time.Time{}, declared: map[string]bool{}}
}

// renew records a provider's renewal of its attempts and returns those
// that still count (the task's current agreement on that provider).
func (b *broker) renew(provider string, agreements []string) []string {
	now := time.Now()
	var current []string
	b.mu.Lock()
	counts := make([]bool, len(agreements))
	for i, id := range agreements {
		counts[i] = b.attemptCounts(id, provider)
	}
	b.mu.Unlock()
	b.leases.mu.Lock()
	defer b.leases.mu.Unlock()
	for i, id := range agreements {
		if !counts[i] || b.leases.declared[id] {
			continue
		}
		b.leases.renewed[id] = now
		current = append(current, id)
	}
	return current
}

// attemptCounts reports whether agreement id on provider is still the
// task's live attempt. The provider may start an attempt before this
// broker has caught up with its own commit (a round that gave up on a
// proposal that committed later), so the current attempt without an
// agreement recorded yet counts too. Called with b.mu held.
func (b *broker) attemptCounts(id, provider string) bool {
	cut := strings.LastIndex(id, "-a")
	if cut < 0 {
		return false
	}
	attempt, err := strconv.Atoi(id[cut+2:])
	t := b.tasks[id[:cut]]
	if err != nil || t == nil || finalState(t.State) {
		return false
	}
	if t.AgreementID != "" {
		return t.AgreementID == id && t.Provider == provider
	}
	return attempt == t.Attempt
}

// leaseWatch declares attempts lost whose leases expired (plus margin)
// without a renewal. A broker that was itself stalled (a tick much later
// than scheduled) cannot tell, so it restarts every lease from then.
func (b *broker) leaseWatch(ctx context.Context) {
	lease := b.a.lease()
	tick := time.NewTicker(min(time.Second, lease/8))
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		stalled := now.Sub(last) > lease/4
		last = now
		var expired []*Task
		b.mu.Lock()
		live := map[string]bool{}
		b.leases.mu.Lock()
		for _, t := range b.tasks {
			if t.AgreementID == "" || (t.State != StatePlaced && t.State != StateRunning) {
				continue
			}
			live[t.AgreementID] = true
			r, ok := b.leases.renewed[t.AgreementID]
			if !ok || stalled {
				b.leases.renewed[t.AgreementID] = now
				continue
			}
			if now.Sub(r) > lease+leaseMargin(lease) && !b.leases.declared[t.AgreementID] {
				b.leases.declared[t.AgreementID] = true
				expired = append(expired, t.clone())
			}
		}
		for id := range b.leases.renewed {
			if !live[id] {
				delete(b.leases.renewed, id)
			}
		}
		b.leases.mu.Unlock()
		b.mu.Unlock()
		if stalled {
			b.a.log.Warn("broker was stalled; restarting attempt leases from now", "gap", now.Sub(last))
		}
		for _, t := range expired {
			b.a.log.Warn("attempt lease expired: provider silent", "task", t.ID, "provider", t.Provider, "lease", lease)
			b.a.goLoop(func() { b.lost(t) })
		}
	}
}

// lease is the lease this agent grants as broker.
func (a *Agent) lease() time.Duration {
	if a.cfg.Lease > 0 {
		return a.cfg.Lease
	}
	return DefaultLease
}

// leaseOf is an agreement's lease.
func leaseOf(ag consensus.Agreement) time.Duration {
	if ag.LeaseSeconds > 0 {
		return time.Duration(ag.LeaseSeconds) * time.Second
	}
	return DefaultLease
}

// renewLoop renews the leases of the attempts running here, by broker,
// and fences those whose lease ran out.
func (p *provider) renewLoop(ctx context.Context) {
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
			p.a.goLoop(func() { p.renewWith(ctx, broker, ats, now) })
		}
	}
}

// renewWith renews ats with their broker; sent is when the request left.
func (p *provider) renewWith(ctx context.Context, broker string, ats []*attempt, sent time.Time) {
	ids := make([]string, len(ats))
	for i, at := range ats {
		ids[i] = at.ag.ID
	}
	var current []string
	if broker == p.a.ID() {
		current = p.a.broker.renew(p.a.ID(), ids)
	} else {
		rctx, cancel := context.WithTimeout(ctx, leaseOf(ats[0].ag)/4)
		resp, s, err := p.a.askPeer(rctx, broker, TaskRequest{V: 1, Op: "renew", Agreements: ids})
		cancel()
		if err != nil {
			p.a.log.Debug("renew attempt leases", "broker", broker, "err", err)
			return // retried at the next tick; fenced if the lease runs out
		}
		s.Close()
		current = resp.Current
	}
	for _, at := range ats {
		if slices.Contains(current, at.ag.ID) {
			at.renewed(sent)
			continue
		}
		p.a.log.Warn("broker says the attempt no longer counts; stopping it", "agreement", at.ag.ID, "broker", broker)
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
