package provider

import (
	"context"
	"log/slog"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// Deps are what a provider works with; the agent provides them.
type Deps struct {
	Identity *mesh.Identity // signs bids, confirmations and task events
	Log      *slog.Logger
	// Ctx is the agent's lifetime; Go runs background work the agent
	// waits for when it closes.
	Ctx context.Context
	Go  func(func())
	// Drivers run the tasks; Order is their configured order, the first
	// being the default for driver "any".
	Drivers    map[string]drivers.Driver
	Order      []string
	Ledger     Ledger
	Frameworks Frameworks
	Host       Host
	Files      Files
	// Renew renews the leases of agreements with their broker and returns
	// those that still count.
	Renew   func(ctx context.Context, broker string, agreements []string) ([]string, error)
	Metrics Metrics
	// DropFinalEvents is a fault injection for tests: outcomes are not
	// recorded.
	DropFinalEvents bool
}

// Ledger is what the provider needs of the ledger, as a replica or a
// client.
type Ledger interface {
	// Commit proposes e until the ledger takes or refuses it or ctx ends
	// (entry ids make retries idempotent); it returns once e is
	// committed, before this agent's replica may have applied it.
	Commit(ctx context.Context, e consensus.Entry) (consensus.Receipt, error)
	Entry(ctx context.Context, id string) (consensus.Record, error)
	// Has waits until this agent's view of the ledger holds the
	// agreement at index.
	Has(ctx context.Context, agreementID string, index uint64) error
}

// Frameworks are the frameworks this agent knows and adheres to.
type Frameworks interface {
	Resolve(ref string) (*rules.Framework, error)
	Adheres(id string) bool
	Adhered() []string
}

// Host is the rest of the agent the provider reads or nudges.
type Host interface {
	// Capacity is this agent's advert as its drivers' fingerprints last
	// showed it (no frameworks or prices).
	Capacity() mesh.Advert
	// Prices are this provider's prices in fw.
	Prices(fw *rules.Framework) map[string]int64
	// Refresh asks the drivers for their capacity again; callers at once
	// may share one run that began after they called.
	Refresh(ctx context.Context) error
	// Republish sends a new advert when free capacity moved far.
	Republish()
}

// Files stages a task's inputs and collects its outputs (results).
type Files interface {
	// CanStage reports whether a driver stages inputs and collects outputs.
	CanStage(driver string) bool
	Prepare(ctx context.Context, ag consensus.Agreement, task *rules.Task, spec *drivers.TaskSpec) error
	// Collect packs the outputs of an attempt that ended kind; nil when
	// there are none.
	Collect(ctx context.Context, d drivers.Driver, specID string, ag consensus.Agreement, kind string) (*consensus.ResultsRef, error)
}

// Metrics counts what the provider does.
type Metrics interface {
	Attempt(kind string) // an attempt event was recorded
}
