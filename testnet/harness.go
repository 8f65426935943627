package testnet

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/local"
	"github.com/pcm-mesh/pcm/mesh"
)

// Topology says whom each new agent bootstraps from.
type Topology int

// Topologies.
const (
	// Chain: agent i bootstraps from agent i-1.
	Chain Topology = iota
	// Star: every agent bootstraps from agent 0.
	Star
)

// Options configure a test mesh.
type Options struct {
	N        int
	Topology Topology
	// AdvertInterval defaults to 200ms (TTL 3 intervals).
	AdvertInterval time.Duration
	// Drivers builds agent i's drivers in its state dir; default one local
	// driver with 2 CPUs and 2 GiB.
	Drivers func(i int, dir string) ([]drivers.Driver, error)
	// Configure adjusts agent i's config before it starts.
	Configure func(i int, cfg *agent.Config)
	// LogLevel for agent logs routed to t.Log (default warn).
	LogLevel slog.Level
}

// Mesh is a set of in-process agents.
type Mesh struct {
	t    testing.TB
	opts Options
	base string
	// voters are the agents' peer ids, the ledger's allow-list.
	voters []string
	mu     sync.Mutex
	Nodes  []*Node
}

// Node is one agent of a Mesh, restartable on the same data dir.
type Node struct {
	Index    int
	Dir      string
	Identity *mesh.Identity
	Config   agent.Config

	mu      sync.Mutex
	running *agent.Agent
}

// Agent is the running agent (nil while stopped).
func (n *Node) Agent() *agent.Agent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running
}

// Start builds and starts opts.N agents, each bootstrapping per the
// topology, and stops them all when the test ends.
func Start(t testing.TB, opts Options) *Mesh {
	t.Helper()
	if opts.AdvertInterval == 0 {
		opts.AdvertInterval = 200 * time.Millisecond
	}
	if opts.LogLevel == 0 {
		opts.LogLevel = slog.LevelWarn
	}
	// TempDir before Cleanup: cleanups run last-in first-out, so the
	// agents stop before their data dirs are removed.
	m := &Mesh{t: t, opts: opts, base: t.TempDir()}
	t.Cleanup(m.Close)
	// The agents of a test mesh trust each other: every one is on the
	// ledger's voter allow-list (the caps still apply).
	for i := range opts.N {
		id, err := mesh.LoadOrCreateIdentity(m.dir(i))
		if err != nil {
			t.Fatalf("agent %d identity: %v", i, err)
		}
		m.voters = append(m.voters, id.PeerID().String())
	}
	for i := range opts.N {
		m.add(i)
	}
	return m
}

func (m *Mesh) dir(i int) string { return filepath.Join(m.base, fmt.Sprintf("agent%d", i)) }

func (m *Mesh) add(i int) {
	t := m.t
	dir := m.dir(i)
	id, err := mesh.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatalf("agent %d identity: %v", i, err)
	}
	cfg := agent.DefaultConfig()
	cfg.Ledger.Voters = m.voters
	// Short leases so tests of lost providers end soon; still long
	// against scheduling stalls (renewals every 2 s).
	cfg.Lease = 8 * time.Second
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	cfg.APIListen = "127.0.0.1:0"
	cfg.AdvertInterval = m.opts.AdvertInterval
	if i > 0 {
		boot := m.Nodes[i-1]
		if m.opts.Topology == Star {
			boot = m.Nodes[0]
		}
		cfg.Bootstrap = []string{tcpAddr(boot.Agent().Node().Addrs())}
	}
	if m.opts.Configure != nil {
		m.opts.Configure(i, &cfg)
	}
	n := &Node{Index: i, Dir: dir, Identity: id, Config: cfg}
	m.mu.Lock()
	m.Nodes = append(m.Nodes, n)
	m.mu.Unlock()
	m.startNode(n)
}

func tcpAddr(addrs []string) string {
	for _, a := range addrs {
		if strings.Contains(a, "/tcp/") {
			return a
		}
	}
	return addrs[0]
}

func (m *Mesh) startNode(n *Node) {
	t := m.t
	t.Helper()
	build := m.opts.Drivers
	if build == nil {
		build = DefaultDrivers
	}
	ds, err := build(n.Index, filepath.Join(n.Dir, "drivers"))
	if err != nil {
		t.Fatalf("agent %d drivers: %v", n.Index, err)
	}
	log := slog.New(slog.NewTextHandler(tLog{t: t, prefix: fmt.Sprintf("agent%d ", n.Index)}, &slog.HandlerOptions{Level: m.opts.LogLevel}))
	a, err := agent.New(n.Config, agent.Deps{Identity: n.Identity, Drivers: ds, Logger: log, Version: "test"})
	if err != nil {
		t.Fatalf("agent %d: %v", n.Index, err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatalf("agent %d start: %v", n.Index, err)
	}
	n.mu.Lock()
	n.running = a
	n.mu.Unlock()
}

// DefaultDrivers is one local driver with 2 CPUs and 2 GiB.
func DefaultDrivers(_ int, dir string) ([]drivers.Driver, error) {
	d, err := local.New(local.Config{StateDir: dir, Capacity: drivers.Resources{CPUs: 2, MemoryMB: 2048, DiskMB: 10240}}, nil)
	if err != nil {
		return nil, err
	}
	return []drivers.Driver{d}, nil
}

// Stop stops agent i (its data dir stays).
func (m *Mesh) Stop(i int) {
	n := m.Nodes[i]
	n.mu.Lock()
	a := n.running
	n.running = nil
	n.mu.Unlock()
	if a != nil {
		if err := a.Close(); err != nil {
			m.t.Logf("agent %d close: %v", i, err)
		}
	}
}

// Restart starts a stopped agent again on its data dir (same peer id).
func (m *Mesh) Restart(i int) {
	m.Stop(i)
	m.startNode(m.Nodes[i])
}

// Running lists the running agents.
func (m *Mesh) Running() []*agent.Agent {
	var out []*agent.Agent
	for _, n := range m.Nodes {
		if a := n.Agent(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// WaitFor polls cond every 10ms until it holds, failing the test after d.
func (m *Mesh) WaitFor(d time.Duration, what string, cond func() bool) {
	m.t.Helper()
	WaitFor(m.t, d, what, cond)
}

// WaitFor polls cond every 10ms until it holds, failing t after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	pause := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// Close stops every agent.
func (m *Mesh) Close() {
	var wg sync.WaitGroup
	for i := range m.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Stop(i)
		}()
	}
	wg.Wait()
}

// tLog routes agent logs to t.Log so they show only for failed tests.
type tLog struct {
	t      testing.TB
	prefix string
}

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// WaitForMesh waits until every running agent lists every running agent
// as a provider and knows a ledger leader.
func (m *Mesh) WaitForMesh(d time.Duration) {
	m.t.Helper()
	running := m.Running()
	var why string
	deadline := time.Now().Add(d)
	for !meshReady(running, &why) {
		if time.Now().After(deadline) {
			m.t.Fatalf("timed out after %s waiting for %d agents to see each other and a ledger leader: %s", d, len(running), why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func meshReady(running []*agent.Agent, why *string) bool {
	for i, a := range running {
		if n := a.Node().Table().Len(); n != len(running) {
			*why = fmt.Sprintf("agent %d sees %d providers (peers %d, validator %+v)", i, n, len(a.Node().Host().Network().Peers()), a.Node().ValidatorStats())
			return false
		}
		if !a.LedgerReady() {
			*why = fmt.Sprintf("agent %d (%s) has no ledger leader (%q) or is not a replica (%s)", i, a.ID(), a.Ledger().Leader(), a.Ledger().Role())
			return false
		}
	}
	return true
}
