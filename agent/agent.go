package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/pcm-mesh/pcm/agent/broker"
	"github.com/pcm-mesh/pcm/agent/internal/group"
	"github.com/pcm-mesh/pcm/agent/provider"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/agent/web"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
)

// Deps are the parts an Agent is built from; cmd/pcm-agent and the
// testnet harness construct them.
type Deps struct {
	Identity *mesh.Identity
	// Drivers run tasks; the first is the default for "any".
	Drivers []drivers.Driver
	Logger  *slog.Logger
	// MeshOptions adjust the mesh node (e.g. mesh.WithHost for mocknet).
	MeshOptions []mesh.Option
	// Version is reported by /v1/status.
	Version string
}

// Agent is one running pcm agent.
type Agent struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	node    *mesh.Node
	drivers map[string]drivers.Driver
	order   []string

	api     *http.Server
	apiAddr string
	web     *web.Server // the page at /; closed before api shuts down
	started time.Time

	ledger       *consensus.Ledger
	ledgerLn     net.Listener
	db           *badger.DB // the agent's state database (consensus.OpenDB): ledger state and tasks
	ledgerJoined atomic.Bool
	fork         atomic.Pointer[consensus.ForkReport] // last CheckPeers report
	// leaderlessSince is when this replica last lost sight of a leader.
	leaderlessSince atomic.Pointer[time.Time]

	done      chan struct{} // closed by fatal
	fatalOnce sync.Once
	fatalErr  error
	tasks     *tasks.Store
	fws       *frameworks
	provider  *provider.Provider // made by Start
	broker    *broker.Broker     // made by Start, with the task store
	res       *resultsSide
	metrics   *metrics
	// runCtx is the agent's lifetime: Close cancels it. Background work
	// (negotiations, event proposals) derives its contexts from it.
	runCtx context.Context

	fpMu sync.Mutex
	fp   map[string]drivers.Fingerprint
	// fpRefresh runs refreshFingerprints for every caller waiting at once
	// (a provider refreshes when an attempt starts and when it ends).
	fpRefresh group.Group
	// advertisedFree is the free capacity the last advert carried.
	advertisedFree map[string]float64

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New prepares an agent; Start brings it up.
func New(cfg Config, deps Deps) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Identity == nil {
		return nil, errors.New("agent: an identity is required")
	}
	if len(deps.Drivers) == 0 {
		return nil, errors.New("agent: at least one driver is required (the default is local)")
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, deps: deps, log: log.With("component", "agent", "peer", deps.Identity.ID()), drivers: map[string]drivers.Driver{}}
	for _, d := range deps.Drivers {
		if _, dup := a.drivers[d.Name()]; dup {
			return nil, fmt.Errorf("agent: driver %q configured twice", d.Name())
		}
		a.drivers[d.Name()] = d
		a.order = append(a.order, d.Name())
	}
	mcfg, err := a.meshConfig()
	if err != nil {
		return nil, err
	}
	node, err := mesh.New(deps.Identity, mcfg, log, deps.MeshOptions...)
	if err != nil {
		return nil, err
	}
	a.node = node
	a.fws = newFrameworks()
	a.metrics = newMetrics(a)
	return a, nil
}

func (a *Agent) meshConfig() (mesh.Config, error) {
	mc := mesh.Config{
		UserAgent:         UserAgent(a.deps.Version),
		Listen:            a.cfg.Listen,
		Bootstrap:         a.cfg.Bootstrap,
		AdvertInterval:    a.cfg.AdvertInterval,
		DiscoverPeers:     a.cfg.DiscoverPeers,
		ReprovideInterval: a.cfg.ReprovideInterval,
		DisableDHT:        a.cfg.DisableDHT,
		NAT:               a.cfg.NAT.mesh(),
	}
	if a.cfg.SwarmKeyFile != "" {
		key, err := os.ReadFile(a.cfg.SwarmKeyFile)
		if err != nil {
			return mc, fmt.Errorf("swarm_key: %w", err)
		}
		mc.SwarmKey = key
	}
	return mc, nil
}

// UserAgent is what an agent of this version reports in libp2p's
// identify protocol: "pcm/<version>".
func UserAgent(version string) string {
	if version == "" {
		version = "dev"
	}
	return "pcm/" + version
}

// Start brings up the mesh, the drivers' recovery, the advert loop and the
// API. On error everything started is closed again.
func (a *Agent) Start(ctx context.Context) error {
	a.started = time.Now()
	if a.done == nil {
		a.done = make(chan struct{})
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", a.cfg.DataDir, err)
	}
	if err := a.checkDisk(); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel, a.runCtx = cancel, runCtx
	a.fpRefresh.Fn = func() error { return a.refreshFingerprints(runCtx) }
	a.provider = provider.New(a.providerDeps())
	if err := a.node.Start(ctx); err != nil {
		cancel()
		return err
	}
	if err := a.openLedger(); err != nil {
		a.Close()
		return err
	}
	if err := a.startLedger(ctx, runCtx); err != nil {
		a.Close()
		return err
	}
	if err := a.refreshFingerprints(ctx); err != nil {
		a.Close()
		return err
	}
	if err := a.startTasks(ctx); err != nil {
		a.Close()
		return err
	}
	a.node.SetAdvertSource(a.advert)
	a.provideCapabilities()
	a.goLoop(func() { a.fingerprintLoop(runCtx) })
	a.goLoop(func() { a.forkWatch(runCtx, 30*time.Second) })
	a.goLoop(func() { a.diskWatch(runCtx) })
	if a.cfg.APIListen != "" {
		if err := a.startAPI(); err != nil {
			a.Close()
			return err
		}
	}
	return nil
}

func (a *Agent) goLoop(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

func (a *Agent) startAPI() error {
	ln, err := net.Listen("tcp", a.cfg.APIListen)
	if err != nil {
		return fmt.Errorf("api_listen %s: %w (another agent running? use --api-listen 127.0.0.1:0)", a.cfg.APIListen, err)
	}
	a.apiAddr = ln.Addr().String()
	// The timeouts cut slow or idle clients (slowloris, a reader that never
	// reads); long streams extend the write deadline chunk by chunk
	// (streamChunk).
	to := a.cfg.APITimeouts.orDefaults()
	a.api = &http.Server{Handler: a.routes(), ReadHeaderTimeout: min(10*time.Second, to.Read), ReadTimeout: to.Read, WriteTimeout: to.Write, IdleTimeout: to.Idle}
	a.goLoop(func() {
		if err := a.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server", "err", err)
		}
	})
	a.log.Info("api listening", "url", a.APIURL())
	if err := a.writeAPIFile(); err != nil {
		a.log.Warn("cannot record the API address in the data dir; `pcm-agent --data-dir` will not find this agent", "err", err)
	}
	return nil
}

// APIURL is the base URL of the HTTP API ("" without one).
func (a *Agent) APIURL() string {
	if a.apiAddr == "" {
		return ""
	}
	return "http://" + a.apiAddr
}

// Node is the agent's mesh node.
func (a *Agent) Node() *mesh.Node { return a.node }

// ID is the agent's peer id.
func (a *Agent) ID() string { return a.deps.Identity.ID() }

// Close stops the API, the loops and the mesh. It is idempotent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		if a.web != nil {
			a.web.Close() // ends the page's event streams
		}
		if a.api != nil {
			errs = append(errs, a.removeAPIFile())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, a.api.Shutdown(ctx))
			cancel()
		}
		if a.cancel != nil {
			a.cancel()
		}
		if a.ledgerLn != nil {
			errs = append(errs, a.ledgerLn.Close())
		}
		if a.ledger != nil {
			errs = append(errs, a.ledger.Close())
		}
		a.wg.Wait()
		if a.tasks != nil {
			errs = append(errs, a.tasks.Close())
		}
		if a.db != nil {
			errs = append(errs, a.db.Close())
		}
		errs = append(errs, a.node.Close())
		for _, name := range a.order {
			errs = append(errs, a.drivers[name].Close())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// driverNames lists the enabled drivers, sorted.
func (a *Agent) driverNames() []string {
	out := append([]string(nil), a.order...)
	sort.Strings(out)
	return out
}
