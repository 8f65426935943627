package broker

import (
	"context"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// Deps are what a broker works with; the agent provides them.
type Deps struct {
	Identity *mesh.Identity // signs calls for proposals, awards, agreements, settlements
	Log      *slog.Logger
	// Ctx is the agent's lifetime; Go runs background work the agent
	// waits for when it closes.
	Ctx        context.Context
	Go         func(func())
	Store      *tasks.Store
	Ledger     Ledger
	Frameworks Frameworks
	Mesh       Mesh
	// Provider is this agent's own provider side, negotiated with over
	// an in-memory pipe (libp2p does not dial itself).
	Provider Provider
	// Lease is the lease granted with each agreement (negotiate.DefaultLease if 0).
	Lease   time.Duration
	Metrics Metrics
}

// Ledger is what the broker needs of the ledger, as a replica or a client.
type Ledger interface {
	// Propose proposes e until the ledger takes or refuses it or ctx
	// ends (entry ids make retries idempotent); it returns once this
	// agent's view of the ledger holds e.
	Propose(ctx context.Context, e consensus.Entry) (consensus.Receipt, error)
	// Commit is Propose returning once e is committed, before this
	// agent's replica may have applied it (an agreement: its provider
	// waits for it, and the broker does not read it back).
	Commit(ctx context.Context, e consensus.Entry) (consensus.Receipt, error)
	Entries(ctx context.Context, f consensus.Filter) ([]consensus.Record, error)
	// AttemptEnd is the first final event recorded for an agreement
	// ("" while there is none).
	AttemptEnd(agreementID string) string
	// Billing says whether every ledger replica reads billed agreements
	// (consensus.BilledAgreementVersion), which need no settlement entry.
	Billing(ctx context.Context) bool
}

// Frameworks resolves a framework reference (id or name@version).
type Frameworks interface {
	Resolve(ref string) (*rules.Framework, error)
}

// Mesh is the broker's view of the mesh: the resource table of adverts
// and streams to providers.
type Mesh interface {
	Table() *mesh.Table
	// NewStreamOneOf opens a stream of the first of ps the peer speaks.
	NewStreamOneOf(ctx context.Context, peer string, ps ...protocol.ID) (network.Stream, error)
}

// Provider is the agent's own provider side.
type Provider interface {
	// SelfView is this provider as the rules see it, held capacity removed.
	SelfView(fw *rules.Framework) *rules.Provider
	// Serve runs the provider side of one negotiation with remote, its
	// messages sealed and opened by w.
	Serve(c negotiate.Conn, remote string, w negotiate.Wire) error
}

// Metrics counts what the broker does.
type Metrics interface {
	Transition(t *tasks.Task) // a task changed state
	Round(placed bool)        // a negotiation round ended
	Settled(amount int64)     // a settlement was recorded
}
