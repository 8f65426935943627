package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
	ma "github.com/multiformats/go-multiaddr"
)

// cable is a UDP proxy in front of a libp2p host (QUIC) that can be
// pulled: once cut, it drops every packet and tells nobody, as when a
// peer's network goes down (ip link set eth0 down), so the other side
// only learns of it from its own timeouts.
type cable struct {
	pc     net.PacketConn
	target atomic.Pointer[net.UDPAddr]
	cut    atomic.Bool
	// drop, when set, decides instead of cut whether a packet from or to
	// client is lost (cableSwitch: either end's node is cut off).
	drop func(client net.Addr) bool

	mu       sync.Mutex
	upstream map[string]*net.UDPConn // one socket to the target per client address
}

// newCable opens the cable's socket; packets flow once it has a target.
func newCable(t testing.TB, target string) *cable {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cable{pc: pc, upstream: map[string]*net.UDPConn{}}
	if target != "" {
		c.setTarget(t, target)
	}
	go c.serve()
	t.Cleanup(func() {
		_ = pc.Close()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, u := range c.upstream {
			_ = u.Close()
		}
	})
	return c
}

func (c *cable) setTarget(t testing.TB, target string) {
	ta, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		t.Fatal(err)
	}
	c.target.Store(ta)
}

func (c *cable) lost(client net.Addr) bool {
	if c.drop != nil {
		return c.drop(client)
	}
	return c.cut.Load()
}

func (c *cable) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		target := c.target.Load()
		if target == nil || c.lost(from) {
			continue
		}
		c.mu.Lock()
		up, ok := c.upstream[from.String()]
		if !ok {
			if up, err = net.DialUDP("udp4", nil, target); err != nil {
				c.mu.Unlock()
				continue
			}
			c.upstream[from.String()] = up
			go c.back(up, from)
		}
		c.mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

// back forwards the target's answers to the client while the cable is in.
func (c *cable) back(up *net.UDPConn, client net.Addr) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if !c.lost(client) {
			_, _ = c.pc.WriteTo(buf[:n], client)
		}
	}
}

func (c *cable) addr(t testing.TB) ma.Multiaddr {
	_, port, _ := net.SplitHostPort(c.pc.LocalAddr().String())
	a, err := ma.NewMultiaddr("/ip4/127.0.0.1/udp/" + port + "/quic-v1")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// cableSwitch gives every node of a test cluster a cable (QUIC only) and
// cuts nodes off: a cut-off node's packets, to it or from it, are lost.
// libp2p's QUIC dials from the socket it listens on, so a node's packets
// to another node's cable come from the node's listen address.
type cableSwitch struct {
	mu     sync.Mutex
	cut    map[string]bool   // node id
	byAddr map[string]string // listen address (host:port) → node id
}

func newCableSwitch() *cableSwitch {
	return &cableSwitch{cut: map[string]bool{}, byAddr: map[string]string{}}
}

// plug opens node id's cable; connect it to the node's host with attach.
func (s *cableSwitch) plug(t testing.TB, id string) *cable {
	c := newCable(t, "")
	c.drop = func(client net.Addr) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cut[id] || s.cut[s.byAddr[client.String()]]
	}
	return c
}

// attach points node id's cable at its host's QUIC listen address.
func (s *cableSwitch) attach(t testing.TB, c *cable, id string, h host.Host) {
	for _, a := range h.Network().ListenAddresses() {
		if p, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			addr := net.JoinHostPort("127.0.0.1", p)
			s.mu.Lock()
			s.byAddr[addr] = id
			s.mu.Unlock()
			c.setTarget(t, addr)
			return
		}
	}
	t.Fatal("host has no QUIC listen address")
}

func (s *cableSwitch) set(id string, cut bool) {
	s.mu.Lock()
	s.cut[id] = cut
	s.mu.Unlock()
}

func quicHost(t *testing.T, s *testSigner) host.Host {
	h, err := libp2p.New(
		libp2p.Identity(s.priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// TestCallToUnreachablePeerEndsWithItsContext: a ledger request to a peer
// whose network went down returns when its context ends. libp2p opens
// streams to a peer known to speak the protocol lazily and, on Close,
// waits up to 10 s for the peer's half of that handshake; closing the
// stream when the context ended kept the request (and Members, which
// asks every replica for its status with a 2 s limit) waiting for those
// 10 s, so the agent's API did not answer /v1/ledger/members within the
// partition check's 3 s (issue #12).
func TestCallToUnreachablePeerEndsWithItsContext(t *testing.T) {
	if testing.Short() {
		t.Skip("libp2p hosts")
	}
	a, b := newSigner(t), newSigner(t)
	ha, hb := quicHost(t, a), quicHost(t, b)
	ln, err := gostream.Listen(hb, LedgerProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var req request
				if json.NewDecoder(io.LimitReader(conn, maxRequestSize)).Decode(&req) == nil {
					_ = json.NewEncoder(conn).Encode(response{V: 1, Status: &ReplicaStatus{ID: b.ID()}})
				}
			}()
		}
	}()
	cab := newCable(t, udpAddr(t, hb))
	ha.Peerstore().AddAddrs(hb.ID(), []ma.Multiaddr{cab.addr(t)}, peerstore.PermanentAddrTTL)

	l := &Ledger{cfg: Config{ID: a.ID(), Dial: func(ctx context.Context, id string) (net.Conn, error) {
		pid, err := peer.Decode(id)
		if err != nil {
			return nil, err
		}
		return gostream.Dial(ctx, ha, pid, LedgerProtocol)
	}}, logger: slog.New(slog.DiscardHandler)}

	// Reachable: the answer comes, and identify has told a that b speaks
	// the ledger protocol, so later streams are opened lazily.
	eventually(t, 10*time.Second, "b to answer and to be known to speak the ledger protocol", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := l.call(ctx, b.ID(), request{Op: opStatus})
		protos, _ := ha.Peerstore().SupportsProtocols(hb.ID(), LedgerProtocol)
		return err == nil && len(protos) == 1
	})

	cab.cut.Store(true)
	// Closing right after the context ends races with the handshake's
	// read noticing the deadline; several calls at once lose it often.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			start := time.Now()
			_, err := l.call(ctx, b.ID(), request{Op: opStatus})
			took := time.Since(start)
			switch {
			case err == nil:
				t.Errorf("call %d through a cut cable answered", i)
			case !errors.Is(err, errRetry):
				t.Errorf("call %d through a cut cable: %v; want an error that wraps errRetry", i, err)
			case took > 3*time.Second:
				t.Errorf("call %d with a 1 s context took %s to return from an unreachable peer (%v)", i, took.Round(time.Millisecond), err)
			}
		}()
	}
	wg.Wait()
}

// udpAddr is h's QUIC listen address as host:port.
func udpAddr(t *testing.T, h host.Host) string {
	for _, a := range h.Addrs() {
		if p, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			return net.JoinHostPort("127.0.0.1", p)
		}
	}
	t.Fatal("host has no UDP address")
	return ""
}
