package agent

import (
	"context"
	"fmt"

	"github.com/pcm-mesh/pcm/agent/broker"
	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/agent/provider"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// The agent's task types, from package tasks (the broker's records).
type (
	Task       = tasks.Task
	Round      = tasks.Round
	RuledOut   = tasks.RuledOut
	BidRecord  = tasks.BidRecord
	Transition = tasks.Transition
	// SubmitError is a task refused at submission.
	SubmitError = broker.SubmitError
)

// Task states (package tasks).
const (
	StateQueued      = tasks.StateQueued
	StateNegotiating = tasks.StateNegotiating
	StatePlaced      = tasks.StatePlaced
	StateRunning     = tasks.StateRunning
	StateSucceeded   = tasks.StateSucceeded
	StateFailed      = tasks.StateFailed
	StateCancelled   = tasks.StateCancelled
	StateLost        = tasks.StateLost
	StateExpired     = tasks.StateExpired
)

// DefaultLease is an attempt's lease when the config sets none.
const DefaultLease = negotiate.DefaultLease

// brokerDeps wire the broker to the rest of the agent.
func (a *Agent) brokerDeps() broker.Deps {
	return broker.Deps{
		Identity: a.deps.Identity, Log: a.log.With("side", "broker"), Ctx: a.runCtx, Go: a.goLoop,
		Store: a.tasks, Ledger: ledgerLink{a}, Frameworks: a.fws, Mesh: a.node, Provider: a.provider,
		Lease: a.cfg.Lease, Metrics: a.metrics,
	}
}

// providerDeps wire the provider to the rest of the agent.
func (a *Agent) providerDeps() provider.Deps {
	return provider.Deps{
		Identity: a.deps.Identity, Log: a.log.With("side", "provider"), Ctx: a.runCtx, Go: a.goLoop,
		Drivers: a.drivers, Order: a.order, Ledger: ledgerLink{a}, Frameworks: a.fws,
		Host: providerHost{a}, Files: providerFiles{a}, Renew: a.renewWith, Metrics: a.metrics,
		DropFinalEvents: a.cfg.Faults.DropFinalEvents,
	}
}

// renewWith renews attempt leases with their broker: this agent's own
// broker directly, another over /pcm/task/1.0.0.
func (a *Agent) renewWith(ctx context.Context, brokerID string, agreements []string) ([]string, error) {
	if brokerID == a.ID() {
		return a.broker.Renew(a.ID(), agreements), nil
	}
	resp, s, err := a.askPeer(ctx, brokerID, TaskRequest{V: 1, Op: "renew", Agreements: agreements})
	if err != nil {
		return nil, fmt.Errorf("renew with %s: %w", brokerID, err)
	}
	s.Close()
	return resp.Current, nil
}

// providerHost is the agent's capacity and prices as the provider reads them.
type providerHost struct{ a *Agent }

func (h providerHost) Capacity() mesh.Advert                       { return h.a.capacityAdvert() }
func (h providerHost) Prices(fw *rules.Framework) map[string]int64 { return h.a.pricesFor(fw) }
func (h providerHost) Refresh(context.Context) error               { return h.a.fpRefresh.Do() }
func (h providerHost) Republish()                                  { h.a.republishIfMoved() }

// providerFiles stages inputs and collects outputs (results*.go).
type providerFiles struct{ a *Agent }

func (f providerFiles) CanStage(driver string) bool { return f.a.driverFiles(driver) }

func (f providerFiles) Prepare(ctx context.Context, ag consensus.Agreement, task *rules.Task, spec *drivers.TaskSpec) error {
	return f.a.prepareFiles(ctx, ag, task, spec)
}

func (f providerFiles) Collect(ctx context.Context, d drivers.Driver, specID string, ag consensus.Agreement, kind string) (*consensus.ResultsRef, error) {
	return f.a.collectResults(ctx, d, specID, ag, kind)
}
