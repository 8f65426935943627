package consensus

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcm-mesh/pcm/mesh"
)

// testSigner is an Ed25519 libp2p identity; its ID is a real peer ID.
type testSigner struct {
	priv crypto.PrivKey
	id   string
}

func newSigner(tb testing.TB) *testSigner {
	tb.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return &testSigner{priv: priv, id: id.String()}
}

func signedBytes(domain string, payload []byte) []byte {
	return append([]byte("pcm:"+domain+"\x00"), payload...)
}

func (s *testSigner) ID() string { return s.id }
func (s *testSigner) Sign(domain string, payload []byte) ([]byte, error) {
	return s.priv.Sign(signedBytes(domain, payload))
}

// testVerifier checks signatures as an agent does (mesh.VerifySignature),
// without the process-wide cache: the nodes of a test share a process,
// and each must check what it applies as a process of its own would.
type testVerifier struct{}

func (testVerifier) Verify(author, domain string, payload, sig []byte) error {
	return mesh.VerifySignature(author, domain, payload, sig)
}

// testLogger routes slog to t.Log until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testNode is one ledger replica in a test cluster.
type testNode struct {
	signer *testSigner
	dir    string
	addr   string // libp2p listen address, kept across restarts

	mu      sync.Mutex
	host    host.Host
	ledger  *Ledger
	inmem   *raft.InmemTransport
	ln      net.Listener
	serving sync.WaitGroup
}

func (n *testNode) Ledger() *Ledger {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ledger
}

// testCluster runs ledger nodes over real libp2p hosts on 127.0.0.1 (raft
// and the ledger protocol on gostream), or over raft's in-memory transport.
type testCluster struct {
	t      testing.TB
	inmem  bool
	config func(*Config)
	logger *slog.Logger
	nodes  []*testNode
	cables *cableSwitch // when set, nodes speak QUIC through cables it can cut
}

func newTestCluster(t testing.TB, n int, inmem bool, config func(*Config)) *testCluster {
	c := &testCluster{t: t, inmem: inmem, config: config, logger: testLogger(t)}
	for range n {
		c.add()
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	return c
}

func (c *testCluster) add() *testNode {
	n := &testNode{signer: newSigner(c.t), dir: filepath.Join(c.t.TempDir(), "ledger"), addr: "/ip4/127.0.0.1/tcp/0"}
	c.nodes = append(c.nodes, n)
	return n
}

// start starts node i (again); bootstrap only matters on first start.
func (c *testCluster) start(i int, bootstrap bool) *Ledger {
	c.t.Helper()
	n := c.nodes[i]
	cfg := DefaultConfig()
	cfg.ID = n.signer.ID()
	cfg.Dir = n.dir
	cfg.Bootstrap = bootstrap
	cfg.Verifier = testVerifier{}
	cfg.Signer = n.signer
	cfg.Logger = c.logger.With("n", i)
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	for _, o := range c.nodes { // the test's nodes are the allow-list
		cfg.Voters = append(cfg.Voters, o.signer.ID())
	}
	if c.config != nil {
		c.config(&cfg)
	}
	if c.inmem {
		c.wireInmem(n, &cfg)
	} else {
		c.wireLibp2p(n, &cfg)
	}
	l, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("open node %d: %v", i, err)
	}
	if err := l.Start(context.Background()); err != nil {
		c.t.Fatalf("start node %d: %v", i, err)
	}
	n.mu.Lock()
	n.ledger = l
	n.mu.Unlock()
	if n.ln != nil {
		ln := n.ln
		n.serving.Add(1)
		go func() {
			defer n.serving.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go l.ServeConn(conn)
			}
		}()
	}
	return l
}

func (c *testCluster) wireLibp2p(n *testNode, cfg *Config) {
	opts := []libp2p.Option{
		libp2p.Identity(n.signer.priv),
		libp2p.ListenAddrStrings(n.addr),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
	}
	var cab *cable
	if c.cables != nil {
		// Peers learn only the cable's address, so all traffic to the
		// node passes through it.
		cab = c.cables.plug(c.t, n.signer.ID())
		opts[1] = libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1")
		opts = append(opts, libp2p.AddrsFactory(func([]ma.Multiaddr) []ma.Multiaddr { return []ma.Multiaddr{cab.addr(c.t)} }))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		c.t.Fatalf("libp2p host: %v", err)
	}
	if cab != nil {
		c.cables.attach(c.t, cab, n.signer.ID(), h)
	}
	n.addr = h.Addrs()[0].String()
	for _, o := range c.nodes {
		o.mu.Lock()
		if o != n && o.host != nil {
			o.host.Peerstore().AddAddrs(h.ID(), h.Addrs(), peerstore.PermanentAddrTTL)
			h.Peerstore().AddAddrs(o.host.ID(), o.host.Addrs(), peerstore.PermanentAddrTTL)
		}
		o.mu.Unlock()
	}
	raftLn, err := gostream.Listen(h, RaftProtocol)
	if err != nil {
		c.t.Fatal(err)
	}
	ledgerLn, err := gostream.Listen(h, LedgerProtocol)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.Transport = NewStreamTransport(&streamLayer{Listener: raftLn, h: h}, cfg.Logger)
	cfg.Dial = func(ctx context.Context, id string) (net.Conn, error) {
		pid, err := peer.Decode(id)
		if err != nil {
			return nil, err
		}
		return gostream.Dial(ctx, h, pid, LedgerProtocol)
	}
	n.mu.Lock()
	n.host, n.ln = h, ledgerLn
	n.mu.Unlock()
}

func (c *testCluster) wireInmem(n *testNode, cfg *Config) {
	_, tr := raft.NewInmemTransport(raft.ServerAddress(n.signer.ID()))
	for _, o := range c.nodes {
		o.mu.Lock()
		if o != n && o.inmem != nil && o.ledger != nil {
			tr.Connect(raft.ServerAddress(o.signer.ID()), o.inmem)
			o.inmem.Connect(raft.ServerAddress(n.signer.ID()), tr)
		}
		o.mu.Unlock()
	}
	cfg.Transport = tr
	cfg.Dial = func(ctx context.Context, id string) (net.Conn, error) {
		for _, o := range c.nodes {
			if o.signer.ID() != id {
				continue
			}
			l := o.Ledger()
			if l == nil || l.closed() {
				return nil, fmt.Errorf("node %s is down", shortID(id))
			}
			a, b := net.Pipe()
			go l.ServeConn(peerConn{Conn: b, remote: n.signer.ID()})
			return a, nil
		}
		return nil, fmt.Errorf("no node %s", shortID(id))
	}
	n.mu.Lock()
	n.inmem = tr
	n.mu.Unlock()
}

// stop closes node i's ledger and host; its data dir stays.
func (c *testCluster) stop(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	l, h, ln, tr := n.ledger, n.host, n.ln, n.inmem
	n.host, n.ln = nil, nil
	n.mu.Unlock()
	if l != nil {
		if err := l.Close(); err != nil {
			c.t.Errorf("close node %d: %v", i, err)
		}
	}
	if ln != nil {
		_ = ln.Close()
		n.serving.Wait()
	}
	if h != nil {
		_ = h.Close()
	}
	if tr != nil {
		for _, o := range c.nodes {
			if o.inmem != nil && o != n {
				o.inmem.Disconnect(raft.ServerAddress(n.signer.ID()))
			}
		}
	}
}

func (c *testCluster) ids(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.nodes[i].signer.ID())
	}
	return out
}

// leader waits for a leader among the running nodes and returns its index.
func (c *testCluster) leader(timeout time.Duration) int {
	c.t.Helper()
	found := -1
	eventually(c.t, timeout, "a ledger leader", func() bool {
		for i, n := range c.nodes {
			if l := n.Ledger(); l != nil && !l.closed() && l.IsLeader() {
				found = i
				return true
			}
		}
		return false
	})
	return found
}

// streamLayer is raft.StreamLayer over libp2p streams (gostream).
type streamLayer struct {
	net.Listener
	h host.Host
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(addr))
	if err != nil {
		return nil, fmt.Errorf("raft address %q is not a peer id: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gostream.Dial(ctx, s.h, pid, RaftProtocol)
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// peerConn is an in-memory conn whose RemoteAddr names the dialling node,
// as a libp2p stream's names its authenticated peer.
type peerConn struct {
	net.Conn
	remote string
}

func (c peerConn) RemoteAddr() net.Addr { return peerAddr(c.remote) }

type peerAddr string

func (a peerAddr) Network() string { return "test" }
func (a peerAddr) String() string  { return string(a) }
