package provider

import (
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/rules"
)

// holdTTL is how long a bid's tentative reservation lives without an award.
const holdTTL = 10 * time.Second

// confirmedTTL is how long a confirmed agreement waits for its commit.
const confirmedTTL = 2 * time.Minute

// Provider is the agent's provider side: it answers CFPs, holds tentative
// reservations, and runs committed agreements through its drivers.
type Provider struct {
	d      Deps
	self   string
	parsed parseCache // CFP documents, by hash

	mu        sync.Mutex
	holds     map[string]*hold // by CFP id
	confirmed map[string]*hold // by agreement id, until committed
	seenCFP   map[string]time.Time
	sessions  map[string]int      // open negotiation sessions, by broker
	attempts  map[string]*attempt // by agreement id
	byTask    map[string]string   // task id -> agreement id running here
	// freed is closed (and replaced) when capacity may have freed: a
	// hold dropped, an attempt ended. CFPs waiting for room watch it.
	freed chan struct{}
}

type hold struct {
	cfp       negotiate.CFP
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

// New makes a provider; Start runs its lease renewals, Recover re-attaches
// to driver tasks that outlived an earlier process.
func New(d Deps) *Provider {
	return &Provider{d: d, self: d.Identity.ID(), holds: map[string]*hold{}, confirmed: map[string]*hold{}, seenCFP: map[string]time.Time{}, sessions: map[string]int{}, attempts: map[string]*attempt{}, byTask: map[string]string{}, freed: make(chan struct{})}
}

// signalFreedLocked wakes the CFPs waiting for capacity; p.mu held.
func (p *Provider) signalFreedLocked() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// heldLocked sums the resources of live tentative reservations; p.mu held.
func (p *Provider) heldLocked(now time.Time) map[string]float64 {
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
func (p *Provider) selfLocked(fw *rules.Framework, now time.Time) *rules.Provider {
	ad := p.d.Host.Capacity()
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
		ID: p.self, Drivers: names, Attrs: ad.Attrs, Frameworks: p.d.Frameworks.Adhered(),
		Total: ad.Total, Free: free, Prices: p.d.Host.Prices(fw), Running: len(p.attempts),
	}
}

// SelfView is selfLocked for callers that do not hold p.mu.
func (p *Provider) SelfView(fw *rules.Framework) *rules.Provider {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.selfLocked(fw, time.Now())
}

// Running is how many attempts run here.
func (p *Provider) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.attempts)
}

// Start runs the provider's background work (lease renewals) until its
// context ends.
func (p *Provider) Start() { p.d.Go(func() { p.renewLoop(p.d.Ctx) }) }

// pickDriver chooses the enabled driver for a task's driver kind.
func (p *Provider) pickDriver(t *rules.Task) string {
	if t.Driver != "" && t.Driver != "any" {
		if _, ok := p.d.Drivers[t.Driver]; ok {
			return t.Driver
		}
		return ""
	}
	return p.d.Order[0]
}

// taskSpec turns a task document into a driver spec.
func taskSpec(id string, t *rules.Task) drivers.TaskSpec {
	return drivers.TaskSpec{ID: id, Resources: drivers.ResourcesOf(t.Resources), Command: t.Command, Script: t.Script, Image: t.Image, Env: t.Env}
}
