package broker

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/agent/tasks"
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
func (b *Broker) Renew(provider string, agreements []string) []string {
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
func (b *Broker) attemptCounts(id, provider string) bool {
	cut := strings.LastIndex(id, "-a")
	if cut < 0 {
		return false
	}
	attempt, err := strconv.Atoi(id[cut+2:])
	t := b.tasks[id[:cut]]
	if err != nil || t == nil || tasks.Final(t.State) {
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
func (b *Broker) leaseWatch(ctx context.Context) {
	lease := b.d.Lease
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
		var expired []*tasks.Task
		b.mu.Lock()
		live := map[string]bool{}
		b.leases.mu.Lock()
		for _, t := range b.tasks {
			if t.AgreementID == "" || (t.State != tasks.StatePlaced && t.State != tasks.StateRunning) {
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
				expired = append(expired, t.Clone())
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
			b.d.Log.Warn("broker was stalled; restarting attempt leases from now", "gap", now.Sub(last))
		}
		for _, t := range expired {
			b.d.Log.Warn("attempt lease expired: provider silent", "task", t.ID, "provider", t.Provider, "lease", lease)
			b.d.Go(func() { b.lost(t) })
		}
	}
}
