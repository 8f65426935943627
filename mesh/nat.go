package mesh

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/autonatv2"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// nat runs everything an agent needs behind NAT, and what a public agent
// offers those behind one:
//
//   - reachability: AutoNAT v2 asks connected peers to dial this agent back
//     on each of its addresses (and serves such requests for others, with
//     a separate dial-back identity);
//   - relay service: while public, the agent is a circuit relay v2;
//   - reservations: while not public, the agent keeps NumRelays relay
//     reservations and announces the /p2p-circuit addresses they give;
//   - hole punching: DCUtR on every relayed connection (libp2p tries once
//     when it arrives; nat retries, backing off from holePunchRetry to
//     maxPunchRetry, while a peer is reachable only through a relay).
//
// pcm runs these itself instead of libp2p's AutoRelay and built-in
// AutoNAT/hole punching wiring because those drop every non-public address
// (relay addresses, observed addresses, dial-back candidates): they cannot
// work where the "internet" is private, as on a campus WAN or in the
// network namespaces of testnet/nat.sh. NATConfig.AllowPrivateAddrs lifts
// that filter; without it the behaviour is libp2p's.
type nat struct {
	cfg       NATConfig
	static    []peer.AddrInfo
	log       *slog.Logger
	republish func()

	h      host.Host
	table  *Table
	dialer host.Host
	an     *autonatv2.AutoNAT
	hps    *holepunch.Service

	reach atomic.Value // string

	mu sync.Mutex // guards rl and pv
	rl relayState
	pv peerState

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// relayState is the relay service and the reservations held.
type relayState struct {
	svc      *relayv2.Relay                  // while public
	rsvps    map[peer.ID]*client.Reservation // while not public
	backoff  map[peer.ID]time.Time           // relays that refused us, until
	circuits []ma.Multiaddr                  // our /p2p-circuit addresses
}

// peerState is what nat remembers per connected peer.
type peerState struct {
	observed map[peer.ID]ma.Multiaddr // our address as that peer sees it
	history  map[peer.ID]*connHistory
	punched  map[peer.ID]attempts // upgrades tried
}

// attempts counts the tries to replace a peer's relayed connection by a
// direct one; they back off from holePunchRetry to maxPunchRetry, so a
// pair no hole can join (symmetric NAT) costs little.
type attempts struct {
	last time.Time
	n    int
}

func (a attempts) due(now time.Time) bool {
	return a.n == 0 || now.Sub(a.last) > min(holePunchRetry<<min(a.n-1, 10), maxPunchRetry)
}

// connHistory remembers how a peer was first reached.
type connHistory struct {
	relayedAt time.Time // first relayed connection, before any direct one
	directAt  time.Time // first direct connection after relayedAt
	direct    bool      // a direct connection was ever seen
}

const (
	reserveBackoff = 15 * time.Second
	holePunchRetry = 10 * time.Second
	maxPunchRetry  = 10 * time.Minute
	maintainEvery  = 2 * time.Second
	probeTimeout   = 20 * time.Second
)

func newNAT(cfg NATConfig, static []peer.AddrInfo, log *slog.Logger, republish func()) *nat {
	m := &nat{
		cfg: cfg, static: static, log: log, republish: republish,
		rl:   relayState{rsvps: map[peer.ID]*client.Reservation{}, backoff: map[peer.ID]time.Time{}},
		pv:   peerState{observed: map[peer.ID]ma.Multiaddr{}, history: map[peer.ID]*connHistory{}, punched: map[peer.ID]attempts{}},
		kick: make(chan struct{}, 1),
	}
	switch cfg.Reachability {
	case ReachabilityPublic, ReachabilityPrivate:
		m.reach.Store(cfg.Reachability)
	default:
		m.reach.Store(ReachabilityUnknown)
	}
	return m
}

// addrs is the host's AddrsFactory: its own addresses plus the relay
// addresses of the reservations it holds.
func (m *nat) addrs(in []ma.Multiaddr) []ma.Multiaddr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append(slices.Clone(in), m.rl.circuits...)
}

// start brings up AutoNAT v2 (client and server), hole punching and the
// loops. transport are the mesh host's transport options (the dial-back
// host uses the same).
func (m *nat) start(h host.Host, table *Table, transport []libp2p.Option) error {
	m.h, m.table = h, table
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return fmt.Errorf("autonat dial-back identity: %w", err)
	}
	dialer, err := libp2p.New(append(slices.Clone(transport),
		libp2p.Identity(sk), libp2p.NoListenAddrs, libp2p.DisableRelay(), libp2p.DisableMetrics())...)
	if err != nil {
		return fmt.Errorf("autonat dial-back host: %w", err)
	}
	m.dialer = dialer
	anOpts := []autonatv2.AutoNATOption{autonatv2.WithServerRateLimit(120, 30, 30, 4)}
	if m.cfg.AllowPrivateAddrs {
		anOpts = append(anOpts, autonatv2.AllowPrivateAddrs)
	}
	an, err := autonatv2.New(dialer, anOpts...)
	if err != nil {
		return fmt.Errorf("autonat v2: %w", err)
	}
	if err := an.Start(h); err != nil {
		return fmt.Errorf("start autonat v2: %w", err)
	}
	m.an = an
	if !m.cfg.DisableHolePunching {
		idh, ok := h.(interface{ IDService() identify.IDService })
		if !ok {
			return errors.New("hole punching needs a libp2p basic host (with identify)")
		}
		var opts []holepunch.Option
		if m.cfg.AllowPrivateAddrs {
			opts = append(opts, holepunch.WithAddrFilter(passAll{}))
		}
		hps, err := holepunch.NewService(h, idh.IDService(), m.holePunchAddrs, opts...)
		if err != nil {
			return fmt.Errorf("hole punching: %w", err)
		}
		m.hps = hps
	}
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return fmt.Errorf("watch identify: %w", err)
	}
	h.Network().Notify(&network.NotifyBundle{ConnectedF: m.connected, DisconnectedF: m.disconnected})
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Go(func() { m.watchIdentify(ctx, sub) })
	m.wg.Go(func() { m.probeLoop(ctx) })
	m.wg.Go(func() { m.maintainLoop(ctx) })
	m.log.Info("nat traversal started", "reachability", m.reachability(), "allow_private_addrs", m.cfg.AllowPrivateAddrs,
		"relay_service", !m.cfg.DisableRelayService, "hole_punching", !m.cfg.DisableHolePunching)
	return nil
}

// close stops the loops, the relay service, hole punching and AutoNAT.
func (m *nat) close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	var errs []error
	m.mu.Lock()
	if m.rl.svc != nil {
		errs = append(errs, m.rl.svc.Close())
		m.rl.svc = nil
	}
	m.mu.Unlock()
	if m.hps != nil {
		errs = append(errs, m.hps.Close())
	}
	if m.an != nil {
		m.an.Close()
	}
	if m.dialer != nil {
		errs = append(errs, m.dialer.Close())
	}
	return errors.Join(errs...)
}

func (m *nat) reachability() string { return m.reach.Load().(string) }

func (m *nat) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// allowed reports whether a is an address a remote peer could dial.
func (m *nat) allowed(a ma.Multiaddr) bool {
	if isCircuit(a) || manet.IsIPUnspecified(a) || manet.IsIPLoopback(a) && !m.cfg.allowLoopback {
		return false
	}
	return manet.IsPublicAddr(a) || m.cfg.AllowPrivateAddrs && manet.IsPrivateAddr(a)
}

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// ownAddrs are this agent's candidate direct addresses: what it listens on
// and what peers observed, dialable ones only. Each observed IP is also
// paired with the QUIC listen port: QUIC dials leave from the listening
// socket, so a port-preserving NAT maps that port even when every peer
// happened to see this agent over TCP (whose dials leave from random
// ports, pcm running without SO_REUSEPORT).
func (m *nat) ownAddrs() []ma.Multiaddr {
	listen := m.h.Network().ListenAddresses()
	out := slices.Clone(listen)
	if ifaces, err := m.h.Network().InterfaceListenAddresses(); err == nil {
		out = append(out, ifaces...)
	}
	m.mu.Lock()
	for _, a := range m.pv.observed {
		out = append(out, a)
		out = append(out, withQUICPorts(a, listen)...)
	}
	m.mu.Unlock()
	out = slices.DeleteFunc(ma.Unique(out), func(a ma.Multiaddr) bool { return !m.allowed(a) })
	return out
}

// withQUICPorts puts observed's IP in front of every QUIC listen address.
func withQUICPorts(observed ma.Multiaddr, listen []ma.Multiaddr) []ma.Multiaddr {
	ip, _ := ma.SplitFirst(observed)
	if ip == nil || ip.Protocol().Code != ma.P_IP4 && ip.Protocol().Code != ma.P_IP6 {
		return nil
	}
	var out []ma.Multiaddr
	for _, l := range listen {
		first, rest := ma.SplitFirst(l)
		if first == nil || first.Protocol().Code != ip.Protocol().Code || len(rest) == 0 {
			continue
		}
		if _, err := rest.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		out = append(out, ma.Multiaddr{*ip}.Encapsulate(rest))
	}
	return out
}

// holePunchAddrs feeds DCUtR; it must return nothing until this agent has
// an address worth telling a peer.
func (m *nat) holePunchAddrs() []ma.Multiaddr { return m.ownAddrs() }

type passAll struct{}

func (passAll) FilterLocal(_ peer.ID, a []ma.Multiaddr) []ma.Multiaddr  { return a }
func (passAll) FilterRemote(_ peer.ID, a []ma.Multiaddr) []ma.Multiaddr { return a }

func (m *nat) watchIdentify(ctx context.Context, sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			ev := e.(event.EvtPeerIdentificationCompleted)
			if ev.ObservedAddr != nil && ev.Conn != nil && !isCircuit(ev.Conn.RemoteMultiaddr()) && m.allowed(ev.ObservedAddr) {
				m.mu.Lock()
				m.pv.observed[ev.Peer] = ev.ObservedAddr
				m.mu.Unlock()
			}
			m.poke()
		}
	}
}

func (m *nat) connected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.pv.history[p]
	if h == nil {
		h = &connHistory{}
		m.pv.history[p] = h
	}
	switch {
	case isCircuit(c.RemoteMultiaddr()):
		if !h.direct && h.relayedAt.IsZero() {
			h.relayedAt = now
		}
	default:
		if !h.direct && !h.relayedAt.IsZero() {
			h.directAt = now
			m.log.Info("direct connection replaces relay", "peer", p, "after", now.Sub(h.relayedAt).Round(time.Millisecond),
				"addr", c.RemoteMultiaddr())
		}
		h.direct = true
	}
}

func (m *nat) disconnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	go func() {
		if m.h.Network().Connectedness(p) == network.Connected {
			return
		}
		m.mu.Lock()
		delete(m.pv.history, p)
		delete(m.pv.observed, p)
		delete(m.pv.punched, p)
		m.mu.Unlock()
		m.poke()
	}()
}

// probeLoop asks peers to dial this agent back (AutoNAT v2): every 2s
// while the answer is unknown, then every ProbeInterval.
func (m *nat) probeLoop(ctx context.Context) {
	if m.cfg.Reachability != "auto" {
		return
	}
	for {
		wait := m.cfg.ProbeInterval
		if m.reachability() == ReachabilityUnknown {
			wait = maintainEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		m.probe(ctx)
	}
}

// probe checks up to four of this agent's addresses in parallel; it is
// public when a peer dialled any of them back, private when peers tried
// and none worked, and unchanged when nobody could answer.
func (m *nat) probe(ctx context.Context) {
	addrs := m.ownAddrs()
	if len(addrs) > 4 {
		addrs = addrs[:4]
	}
	var mu sync.Mutex
	var public, private int
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			res, err := m.an.GetReachability(pctx, []autonatv2.Request{{Addr: a, SendDialData: true}})
			if err != nil || res.AllAddrsRefused {
				m.log.Debug("reachability probe unanswered", "addr", a, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch res.Reachability {
			case network.ReachabilityPublic:
				public++
			case network.ReachabilityPrivate:
				private++
			}
		}()
	}
	wg.Wait()
	next := m.reachability()
	switch {
	case public > 0:
		next = ReachabilityPublic
	case private > 0:
		next = ReachabilityPrivate
	}
	if old := m.reachability(); next != old {
		m.reach.Store(next)
		m.log.Info("reachability changed", "from", old, "to", next, "probed", len(addrs))
		m.poke()
		m.republish()
	}
}

// maintainLoop keeps the relay service, the reservations and the hole
// punch retries in line with the reachability.
func (m *nat) maintainLoop(ctx context.Context) {
	t := time.NewTicker(maintainEvery)
	defer t.Stop()
	for tickOrKick(ctx, t.C, m.kick) {
		m.maintainRelayService()
		m.maintainReservations(ctx)
		m.upgradeRelayed(ctx)
	}
}

// upgradeRelayed replaces relayed connections with direct ones: a peer
// whose advert says public is dialled directly at once (no hole needed);
// for the others DCUtR is asked again, backing off from holePunchRetry
// to maxPunchRetry. Of two NATed
// peers the one with the smaller id asks, so they do not start clashing
// attempts.
func (m *nat) upgradeRelayed(ctx context.Context) {
	// DirectConnect blocks until the service has an address to offer
	// (it registers its protocol then): punch only once it has.
	punch := m.hps != nil && slices.Contains(m.h.Mux().Protocols(), holepunch.Protocol)
	now := time.Now()
	for _, p := range m.h.Network().Peers() {
		if !onlyRelayed(m.h.Network().ConnsToPeer(p)) {
			continue
		}
		e, known := m.table.Get(p.String())
		public := known && e.Advert.Reachability == ReachabilityPublic
		if !public && (!punch || p >= m.h.ID()) {
			continue
		}
		m.mu.Lock()
		a := m.pv.punched[p]
		h := m.pv.history[p]
		due := a.due(now) && h != nil && (public || now.Sub(h.relayedAt) > holePunchRetry/3)
		if due {
			m.pv.punched[p] = attempts{last: now, n: a.n + 1}
		}
		m.mu.Unlock()
		if !due {
			continue
		}
		m.wg.Go(func() {
			var err error
			if public {
				dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "public peer"), 10*time.Second)
				err = m.h.Connect(dctx, peer.AddrInfo{ID: p})
				cancel()
			} else {
				err = m.hps.DirectConnect(p)
			}
			if err != nil && ctx.Err() == nil {
				m.log.Debug("no direct connection yet; staying on the relay", "peer", p, "public", public, "err", err)
			}
		})
	}
}

func onlyRelayed(conns []network.Conn) bool {
	for _, c := range conns {
		if !isCircuit(c.RemoteMultiaddr()) {
			return false
		}
	}
	return len(conns) > 0
}

// NATStatus is what `status` shows about NAT traversal.
type NATStatus struct {
	// Reachability is public, private or unknown.
	Reachability string `json:"reachability"`
	// RelayService is true while this agent serves as a relay.
	RelayService bool `json:"relay_service"`
	// Relays are the relays this agent holds reservations with.
	Relays []string `json:"relays,omitempty"`
	// ObservedAddrs are this agent's addresses as its peers see them.
	ObservedAddrs []string `json:"observed_addrs,omitempty"`
}

func (m *nat) status() NATStatus {
	st := NATStatus{Reachability: m.reachability()}
	if m.h == nil {
		return st
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st.RelayService = m.rl.svc != nil
	for id := range m.rl.rsvps {
		st.Relays = append(st.Relays, id.String())
	}
	slices.Sort(st.Relays)
	for _, a := range m.pv.observed {
		st.ObservedAddrs = append(st.ObservedAddrs, a.String())
	}
	slices.Sort(st.ObservedAddrs)
	st.ObservedAddrs = slices.Compact(st.ObservedAddrs)
	return st
}

// history returns when the peer was first reached through a relay and
// when a direct connection followed (zero when it did not).
func (m *nat) historyOf(p peer.ID) (relayedAt, directAt time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.pv.history[p]; h != nil {
		return h.relayedAt, h.directAt
	}
	return time.Time{}, time.Time{}
}
