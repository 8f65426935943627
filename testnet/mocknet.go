package testnet

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/sim"
	"github.com/pcm-mesh/pcm/mesh"
)

// MockOptions configure a Mocknet: many agents over libp2p's in-memory
// network in one process, for meshes of 100+ agents.
type MockOptions struct {
	N int
	// Degree is how many earlier agents each agent bootstraps from,
	// chosen at random (default 3).
	Degree int
	// AdvertInterval defaults to 500ms (TTL 3 intervals).
	AdvertInterval time.Duration
	// Drivers builds agent i's drivers; default SimDrivers.
	Drivers func(i int, dir string) ([]drivers.Driver, error)
	// Configure adjusts agent i's config before it starts.
	Configure func(i int, cfg *agent.Config)
	// LogLevel for agent logs routed to t.Log (default warn).
	LogLevel slog.Level
	// Seed makes the bootstrap choice reproducible (default 1).
	Seed uint64
}

// Mocknet is a set of in-process agents on libp2p's mocknet. Agents have
// no HTTP API and no DHT; every pair of agents is linked, so any agent
// can dial any other unless Partition cut them apart.
type Mocknet struct {
	t    testing.TB
	opts MockOptions
	mn   mocknet.Mocknet
	base string

	mu    sync.Mutex
	cut   map[[2]int]bool
	Nodes []*MockNode
}

// MockNode is one agent of a Mocknet, restartable on the same data dir
// and the same in-memory host.
type MockNode struct {
	Index    int
	Dir      string
	Identity *mesh.Identity
	Host     host.Host
	Config   agent.Config

	mu      sync.Mutex
	running *agent.Agent
}

// Agent is the running agent (nil while killed).
func (n *MockNode) Agent() *agent.Agent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running
}

// SimDrivers is one in-memory sim driver with 16 CPUs and 64 GiB whose
// tasks take 1 simulated second, run a thousand times faster.
func SimDrivers(i int, _ string) ([]drivers.Driver, error) {
	cfg := sim.DefaultConfig()
	cfg.TimeScale = 0.001
	cfg.Seed = int64(i + 1)
	d, err := sim.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	return []drivers.Driver{d}, nil
}

// StartMocknet builds opts.N agents on one mocknet, all linked, each
// bootstrapping from up to Degree random earlier agents; agent 0 starts
// the ledger. Everything stops when the test ends.
func StartMocknet(t testing.TB, opts MockOptions) *Mocknet {
	t.Helper()
	if opts.Degree <= 0 {
		opts.Degree = 3
	}
	if opts.AdvertInterval == 0 {
		opts.AdvertInterval = 500 * time.Millisecond
	}
	if opts.LogLevel == 0 {
		opts.LogLevel = slog.LevelWarn
	}
	if opts.Drivers == nil {
		opts.Drivers = SimDrivers
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	m := &Mocknet{t: t, opts: opts, mn: mocknet.New(), base: t.TempDir(), cut: map[[2]int]bool{}}
	t.Cleanup(m.Close)
	for i := range opts.N {
		dir := filepath.Join(m.base, fmt.Sprintf("agent%d", i))
		id, err := mesh.LoadOrCreateIdentity(dir)
		if err != nil {
			t.Fatalf("agent %d identity: %v", i, err)
		}
		addr := ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", 64+i>>16, i>>8&255, i&255))
		h, err := m.mn.AddPeer(id.PrivKey(), addr)
		if err != nil {
			t.Fatalf("agent %d mock host: %v", i, err)
		}
		m.Nodes = append(m.Nodes, &MockNode{Index: i, Dir: dir, Identity: id, Host: h})
	}
	if err := m.mn.LinkAll(); err != nil {
		t.Fatalf("link mocknet: %v", err)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0))
	var voters []string // a test mesh trusts itself: all on the ledger's allow-list
	for _, n := range m.Nodes {
		voters = append(voters, n.Identity.ID())
	}
	for i, n := range m.Nodes {
		cfg := agent.DefaultConfig()
		cfg.Ledger.Voters = voters
		cfg.DataDir = n.Dir
		cfg.APIListen = ""
		cfg.DisableDHT = true
		cfg.AdvertInterval = opts.AdvertInterval
		for _, j := range pick(rng, wave(i), opts.Degree) {
			cfg.Bootstrap = append(cfg.Bootstrap, m.Nodes[j].Multiaddr())
		}
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		n.Config = cfg
	}
	// Start in waves: agent 0 alone (it bootstraps the ledger), then
	// groups that bootstrap only from agents of earlier waves, started in
	// parallel.
	for lo := 0; lo < opts.N; {
		hi := min(opts.N, waveEnd(lo))
		errs := make([]error, hi-lo)
		var wg sync.WaitGroup
		for k, n := range m.Nodes[lo:hi] {
			wg.Go(func() { errs[k] = m.start(n) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		t.Logf("mocknet: %d of %d agents started", hi, opts.N)
		lo = hi
	}
	return m
}

// startWave is the most agents StartMocknet starts at once.
const startWave = 16

// waveEnd is where the wave starting at agent lo ends.
func waveEnd(lo int) int { return lo + min(max(1, lo), startWave) }

// wave is how many agents have started before agent i's wave (i itself
// excluded): the agents it may bootstrap from. Waves double in size up
// to startWave: [0] [1] [2 3] [4..7] [8..15] [16..31] [32..47] ...
func wave(i int) int {
	lo := 0
	for {
		hi := waveEnd(lo)
		if i < hi {
			return lo
		}
		lo = hi
	}
}

// pick returns up to k distinct random numbers below n.
func pick(rng *rand.Rand, n, k int) []int {
	p := rng.Perm(n)
	if len(p) > k {
		p = p[:k]
	}
	return p
}

// Multiaddr is the node's in-memory address, ending in /p2p/<id>.
func (n *MockNode) Multiaddr() string {
	return n.Host.Addrs()[0].String() + "/p2p/" + n.Identity.ID()
}

// start starts n's agent; it is safe to call from several goroutines.
func (m *Mocknet) start(n *MockNode) error {
	ds, err := m.opts.Drivers(n.Index, filepath.Join(n.Dir, "drivers"))
	if err != nil {
		return fmt.Errorf("agent %d drivers: %w", n.Index, err)
	}
	log := slog.New(slog.NewTextHandler(tLog{t: m.t, prefix: fmt.Sprintf("agent%d ", n.Index)}, &slog.HandlerOptions{Level: m.opts.LogLevel}))
	a, err := agent.New(n.Config, agent.Deps{Identity: n.Identity, Drivers: ds, Logger: log, Version: "test", MeshOptions: []mesh.Option{mesh.WithHost(deadlineHost{n.Host})}})
	if err != nil {
		return fmt.Errorf("agent %d: %w", n.Index, err)
	}
	if err := a.Start(m.t.Context()); err != nil {
		return fmt.Errorf("agent %d start: %w", n.Index, err)
	}
	n.mu.Lock()
	n.running = a
	n.mu.Unlock()
	return nil
}

// Kill stops agent i and cuts its links, as if its machine went away;
// its data dir and host stay for Restart.
func (m *Mocknet) Kill(i int) {
	n := m.Nodes[i]
	n.mu.Lock()
	a := n.running
	n.running = nil
	n.mu.Unlock()
	if a == nil {
		return
	}
	for j := range m.Nodes {
		if j != i {
			m.unlink(i, j)
		}
	}
	if err := a.Close(); err != nil {
		m.t.Logf("agent %d close: %v", i, err)
	}
}

// Restart starts a killed agent again on its data dir and host, linked to
// every agent it is not partitioned from, joining through them.
func (m *Mocknet) Restart(i int) {
	m.t.Helper()
	m.Kill(i)
	n := m.Nodes[i]
	for j := range m.Nodes {
		if j != i && !m.isCut(i, j) {
			m.link(i, j)
		}
	}
	var boot []string
	for j, o := range m.Nodes {
		if j != i && o.Agent() != nil && !m.isCut(i, j) && len(boot) < m.opts.Degree {
			boot = append(boot, o.Multiaddr())
		}
	}
	if len(boot) > 0 {
		n.Config.Bootstrap = boot
	}
	if err := m.start(n); err != nil {
		m.t.Fatal(err)
	}
}

// Partition splits the agents into groups that cannot reach each other:
// every link between agents of different groups is cut and their
// connections closed. Agents in no group keep all their links.
func (m *Mocknet) Partition(groups ...[]int) {
	group := map[int]int{}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for i := range m.Nodes {
		for j := i + 1; j < len(m.Nodes); j++ {
			gi, oki := group[i]
			gj, okj := group[j]
			if oki && okj && gi != gj {
				m.mu.Lock()
				m.cut[[2]int{i, j}] = true
				m.mu.Unlock()
				m.unlink(i, j)
			}
		}
	}
}

// Heal undoes every Partition: all running agents are linked again and
// reconnected to the agents they had been cut from.
func (m *Mocknet) Heal() {
	m.mu.Lock()
	cut := m.cut
	m.cut = map[[2]int]bool{}
	m.mu.Unlock()
	for pair := range cut {
		i, j := pair[0], pair[1]
		if m.Nodes[i].Agent() == nil || m.Nodes[j].Agent() == nil {
			continue
		}
		m.link(i, j)
		if _, err := m.mn.ConnectPeers(m.Nodes[i].Host.ID(), m.Nodes[j].Host.ID()); err != nil {
			m.t.Logf("reconnect %d-%d: %v", i, j, err)
		}
	}
}

func (m *Mocknet) isCut(i, j int) bool {
	if i > j {
		i, j = j, i
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cut[[2]int{i, j}]
}

func (m *Mocknet) link(i, j int) {
	a, b := m.Nodes[i].Host.ID(), m.Nodes[j].Host.ID()
	if len(m.mn.LinksBetweenPeers(a, b)) > 0 {
		return
	}
	if _, err := m.mn.LinkPeers(a, b); err != nil {
		m.t.Logf("link %d-%d: %v", i, j, err)
	}
}

func (m *Mocknet) unlink(i, j int) {
	a, b := m.Nodes[i].Host.ID(), m.Nodes[j].Host.ID()
	if len(m.mn.LinksBetweenPeers(a, b)) > 0 {
		_ = m.mn.UnlinkPeers(a, b)
	}
	_ = m.mn.DisconnectPeers(a, b)
}

// Running lists the running agents.
func (m *Mocknet) Running() []*agent.Agent {
	var out []*agent.Agent
	for _, n := range m.Nodes {
		if a := n.Agent(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// WaitFor polls cond until it holds, failing the test after d.
func (m *Mocknet) WaitFor(d time.Duration, what string, cond func() bool) {
	m.t.Helper()
	WaitFor(m.t, d, what, cond)
}

// WaitForMesh waits until every running agent sees every running agent
// as a provider and the ledger has its replicas (up to max_voters +
// max_non_voters; the other agents are clients) knowing a leader.
func (m *Mocknet) WaitForMesh(d time.Duration) {
	m.t.Helper()
	running := m.Running()
	lc := m.Nodes[0].Config.Ledger
	replicas := lc.MaxVoters + lc.MaxNonVoters
	m.WaitFor(d, fmt.Sprintf("%d agents to see each other and the ledger replicas a leader", len(running)), func() bool {
		return MeshReady(running, replicas)
	})
}

// MeshReady reports whether every agent's resource table lists all the
// agents and min(len(agents), replicas) of them are ledger replicas that
// know a leader; replicas is max_voters + max_non_voters (9 by default).
// (Agent.LedgerReady is false on ledger clients, so waiting for it on
// every agent never ends past 9 agents.)
func MeshReady(agents []*agent.Agent, replicas int) bool {
	ready := 0
	for _, a := range agents {
		if a.Node().Table().Len() != len(agents) {
			return false
		}
		if a.LedgerReady() {
			ready++
		}
	}
	return ready >= min(len(agents), replicas)
}

// PeerIDs are the agents' peer ids, by index.
func (m *Mocknet) PeerIDs() []peer.ID {
	out := make([]peer.ID, len(m.Nodes))
	for i, n := range m.Nodes {
		out[i] = n.Host.ID()
	}
	return out
}

// Close stops every agent, then the in-memory network.
func (m *Mocknet) Close() {
	var wg sync.WaitGroup
	for i, n := range m.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.mu.Lock()
			a := n.running
			n.running = nil
			n.mu.Unlock()
			if a != nil {
				if err := a.Close(); err != nil {
					m.t.Logf("agent %d close: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if err := m.mn.Close(); err != nil {
		m.t.Logf("close mocknet: %v", err)
	}
}
