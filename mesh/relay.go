package mesh

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// The relay half of nat: the circuit relay v2 service a public agent runs,
// and the reservations an agent behind NAT keeps on such relays.

func (m *nat) maintainRelayService() {
	want := m.reachability() == ReachabilityPublic && !m.cfg.DisableRelayService
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case want && m.rl.svc == nil:
		r, err := relayv2.New(m.h, m.relayOptions()...)
		if err != nil {
			m.log.Warn("relay service did not start", "err", err)
			return
		}
		m.rl.svc = r
		m.log.Info("relay service on", "max_reservations", m.cfg.Relay.MaxReservations,
			"max_circuits", m.cfg.Relay.MaxCircuits, "limit_duration", m.cfg.Relay.Duration, "limit_bytes", m.cfg.Relay.DataBytes)
	case !want && m.rl.svc != nil:
		_ = m.rl.svc.Close()
		m.rl.svc = nil
		m.log.Info("relay service off", "reachability", m.reachability())
	}
}

// relayOptions: libp2p's defaults, except the per-circuit limits (off
// unless configured) and, with AllowPrivateAddrs, private relay addresses
// in reservations.
func (m *nat) relayOptions() []relayv2.Option {
	res := relayv2.DefaultResources()
	res.MaxReservations = m.cfg.Relay.MaxReservations
	res.MaxCircuits = m.cfg.Relay.MaxCircuits
	res.Limit = nil
	if m.cfg.Relay.Duration > 0 || m.cfg.Relay.DataBytes > 0 {
		res.Limit = &relayv2.RelayLimit{Duration: m.cfg.Relay.Duration, Data: m.cfg.Relay.DataBytes}
		if res.Limit.Duration == 0 {
			res.Limit.Duration = 24 * 365 * time.Hour
		}
		if res.Limit.Data == 0 {
			res.Limit.Data = 1 << 62
		}
	}
	opts := []relayv2.Option{relayv2.WithResources(res), relayv2.WithACL(relayACL{m})}
	if res.Limit == nil {
		opts = append(opts, relayv2.WithInfiniteLimits())
	}
	if m.cfg.AllowPrivateAddrs {
		opts = append(opts, relayv2.WithReservationAddressFilter(m.allowed))
	}
	return opts
}

// relayACL lets anyone reserve, and relays a circuit only when one end is
// a provider whose advert this agent holds: the relay carries mesh
// traffic, not arbitrary libp2p peers'.
type relayACL struct{ m *nat }

func (relayACL) AllowReserve(peer.ID, ma.Multiaddr) bool { return true }

func (a relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	_, s := a.m.table.Get(src.String())
	_, d := a.m.table.Get(dest.String())
	return s || d
}

// maintainReservations keeps NumRelays reservations while this agent is
// not public, dropping those whose relay went away or expires soon.
func (m *nat) maintainReservations(ctx context.Context) {
	public := m.reachability() == ReachabilityPublic
	now := time.Now()
	m.mu.Lock()
	changed := false
	for id, r := range m.rl.rsvps {
		if public || m.h.Network().Connectedness(id) != network.Connected || r.Expiration.Before(now.Add(5*time.Minute)) {
			delete(m.rl.rsvps, id)
			m.h.ConnManager().Unprotect(id, "relay")
			changed = true
		}
	}
	need := m.cfg.NumRelays - len(m.rl.rsvps)
	m.mu.Unlock()
	if !public && need > 0 {
		for _, ai := range m.relayCandidates() {
			if need == 0 || ctx.Err() != nil {
				break
			}
			if m.reserve(ctx, ai) {
				need--
				changed = true
			}
		}
	}
	if changed {
		m.updateCircuits()
	}
}

// relayCandidates: configured relays and bootstrap peers first, then
// agents whose adverts say public, then connected peers that speak the
// relay hop protocol; none that we hold or that refused us lately.
func (m *nat) relayCandidates() []peer.AddrInfo {
	now := time.Now()
	seen := map[peer.ID]bool{m.h.ID(): true}
	m.mu.Lock()
	for id := range m.rl.rsvps {
		seen[id] = true
	}
	for id, until := range m.rl.backoff {
		if until.After(now) {
			seen[id] = true
		} else {
			delete(m.rl.backoff, id)
		}
	}
	m.mu.Unlock()
	var out []peer.AddrInfo
	add := func(ai peer.AddrInfo) {
		if !seen[ai.ID] {
			seen[ai.ID] = true
			out = append(out, ai)
		}
	}
	for _, ai := range m.static {
		add(ai)
	}
	for _, e := range m.table.List(nil) {
		if e.Advert.Reachability != ReachabilityPublic {
			continue
		}
		if id, err := peer.Decode(e.Advert.Provider); err == nil {
			add(peer.AddrInfo{ID: id})
		}
	}
	for _, id := range m.h.Network().Peers() {
		if ok, _ := m.h.Peerstore().SupportsProtocols(id, proto.ProtoIDv2Hop); len(ok) > 0 {
			add(peer.AddrInfo{ID: id})
		}
	}
	return out
}

func (m *nat) reserve(ctx context.Context, ai peer.AddrInfo) bool {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rctx = network.WithDialPeerTimeout(rctx, 5*time.Second)
	r, err := client.Reserve(rctx, m.h, ai)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.rl.backoff[ai.ID] = time.Now().Add(reserveBackoff)
		m.log.Debug("relay reservation refused", "relay", ai.ID, "err", err)
		return false
	}
	m.rl.rsvps[ai.ID] = r
	m.h.ConnManager().Protect(ai.ID, "relay")
	m.log.Info("relay reservation", "relay", ai.ID, "until", r.Expiration.UTC().Format(time.RFC3339))
	return true
}

// updateCircuits recomputes the /p2p-circuit addresses from the
// reservations and republishes the advert when they changed.
func (m *nat) updateCircuits() {
	circuit := ma.StringCast("/p2p-circuit")
	m.mu.Lock()
	var out []ma.Multiaddr
	for id, r := range m.rl.rsvps {
		addrs := r.Addrs
		if len(addrs) == 0 {
			for _, a := range m.h.Peerstore().Addrs(id) {
				if m.allowed(a) {
					addrs = append(addrs, a.Encapsulate(ma.StringCast("/p2p/"+id.String())))
				}
			}
		}
		for _, a := range addrs {
			out = append(out, a.Encapsulate(circuit))
		}
	}
	slices.SortFunc(out, ma.Multiaddr.Compare)
	changed := !slices.EqualFunc(out, m.rl.circuits, ma.Multiaddr.Equal)
	m.rl.circuits = out
	m.mu.Unlock()
	if changed {
		m.log.Info("relay addresses", "addrs", out)
		m.republish()
	}
}
