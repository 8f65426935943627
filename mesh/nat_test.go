package mesh

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

const echoProtocol = "/pcm/test/echo/1.0.0"

// TestRelayCarriesStreamsToAPrivateAgent: a public agent serves as relay,
// a private one reserves on it, and a third reaches the private one only
// through the relay, with and without relay limits.
func TestRelayCarriesStreamsToAPrivateAgent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  RelayLimits
		limited bool
	}{
		{"unlimited (default)", RelayLimits{}, false},
		{"limited by the operator", RelayLimits{Duration: time.Minute, DataBytes: 1 << 20}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := startNodeWith(t, Config{NAT: NATConfig{Reachability: ReachabilityPublic, Relay: tc.limits}})
			waitFor(t, 10*time.Second, "the relay service", func() bool { return relay.NAT().RelayService })
			boot := relay.Addrs()[:1]
			private := startNodeWith(t, Config{Bootstrap: boot, NAT: NATConfig{Reachability: ReachabilityPrivate}})
			private.Handle(echoProtocol, echo)
			waitFor(t, 10*time.Second, "a reservation on the relay", func() bool {
				st := private.NAT()
				return len(st.Relays) == 1 && st.Relays[0] == relay.Identity().ID()
			})
			// The relay refuses circuits unless one end is a provider it knows.
			waitFor(t, 10*time.Second, "the relay to hold the private agent's advert", func() bool {
				_, ok := relay.Table().Get(private.Identity().ID())
				return ok
			})

			// The client may dial the relay, and anyone else only through
			// it: on loopback, a gater stands in for the NAT.
			client := startNodeWith(t, Config{NAT: NATConfig{Reachability: ReachabilityPrivate, NumRelays: 1}},
				withLibp2p(libp2p.ConnectionGater(natGater{open: relay.Host().ID()})))
			circuit := ma.StringCast(boot[0] + "/p2p-circuit")
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			pid := private.Host().ID()
			if err := client.Host().Connect(ctx, peer.AddrInfo{ID: pid, Addrs: []ma.Multiaddr{circuit}}); err != nil {
				t.Fatalf("connect through the relay: %v", err)
			}
			s, err := client.NewStream(ctx, pid.String(), echoProtocol)
			if err != nil {
				t.Fatalf("stream through the relay: %v", err)
			}
			defer s.Close()
			if !isCircuit(s.Conn().RemoteMultiaddr()) {
				t.Fatalf("stream went over %s, want the relay", s.Conn().RemoteMultiaddr())
			}
			if got := roundTrip(t, s, "hello across the relay"); got != "hello across the relay" {
				t.Fatalf("echo = %q", got)
			}

			var info *PeerInfo
			for _, p := range client.Peers() {
				if p.ID == pid.String() {
					info = &p
				}
			}
			if info == nil || len(info.Conns) == 0 {
				t.Fatalf("peers does not list the private agent: %+v", client.Peers())
			}
			c := info.Conns[0]
			if !c.Relayed || c.Limited != tc.limited || c.Since.IsZero() || info.RelayedAt == nil || info.DirectAt != nil {
				t.Fatalf("peers shows %+v (relayed_at %v, direct_at %v); want relayed, limited=%v, with since and relayed_at",
					c, info.RelayedAt, info.DirectAt, tc.limited)
			}
		})
	}
}

// natGater refuses direct dials to every peer but open, as a NAT in front
// of them would.
type natGater struct{ open peer.ID }

func (natGater) InterceptPeerDial(peer.ID) bool { return true }
func (g natGater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return p == g.open || isCircuit(a)
}
func (natGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (natGater) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (natGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// echo answers one line with the same line.
func echo(s network.Stream) {
	defer s.Close()
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil {
		return
	}
	_, _ = io.WriteString(s, line)
}

func roundTrip(t *testing.T, s network.Stream, msg string) string {
	t.Helper()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(s, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestAdvertCarriesReachabilityAndRelayAddrs(t *testing.T) {
	relay := startNodeWith(t, Config{NAT: NATConfig{Reachability: ReachabilityPublic}})
	waitFor(t, 10*time.Second, "the relay service", func() bool { return relay.NAT().RelayService })
	private := startNodeWith(t, Config{Bootstrap: relay.Addrs()[:1], NAT: NATConfig{Reachability: ReachabilityPrivate}})
	waitFor(t, 10*time.Second, "a reservation", func() bool { return len(private.NAT().Relays) == 1 })
	if a := relay.NextAdvert(); a.Reachability != ReachabilityPublic {
		t.Fatalf("relay advert reachability = %q, want public", a.Reachability)
	}
	a := private.NextAdvert()
	if a.Reachability != ReachabilityPrivate {
		t.Fatalf("private advert reachability = %q, want private", a.Reachability)
	}
	// On loopback the relay hands out no dialable address (loopback is
	// never one): no circuit address is made up.
	for _, s := range a.Addrs {
		if strings.Contains(s, "/p2p-circuit") && strings.Contains(s, "/127.0.0.1/") {
			t.Fatalf("advert carries a loopback relay address %s", s)
		}
	}
}

// TestAutoNATTellsPublicFromPrivate: agents that accept inbound
// connections learn they are public from their peers' dial-backs; one
// whose "firewall" (a gater) refuses every inbound connection learns it is
// private, reserves on a public agent and advertises the relay address.
func TestAutoNATTellsPublicFromPrivate(t *testing.T) {
	nat := NATConfig{AllowPrivateAddrs: true, allowLoopback: true}
	a := startNodeWith(t, Config{NAT: nat})
	b := startNodeWith(t, Config{Bootstrap: a.Addrs()[:1], NAT: nat})
	c := startNodeWith(t, Config{Bootstrap: a.Addrs()[:1], NAT: nat}, withLibp2p(libp2p.ConnectionGater(noInbound{})))
	for name, n := range map[string]*Node{"a": a, "b": b} {
		waitFor(t, 60*time.Second, name+" to find it is public", func() bool { return n.NAT().Reachability == ReachabilityPublic })
	}
	waitFor(t, 60*time.Second, "c to find it is private", func() bool { return c.NAT().Reachability == ReachabilityPrivate })
	waitFor(t, 30*time.Second, "c to hold a reservation and advertise its relay address", func() bool {
		if len(c.NAT().Relays) == 0 {
			return false
		}
		for _, s := range c.NextAdvert().Addrs {
			if strings.Contains(s, "/p2p-circuit/p2p/"+c.Identity().ID()) {
				return true
			}
		}
		return false
	})
	if !a.NAT().RelayService || c.NAT().RelayService {
		t.Fatalf("relay service: a %v (public, want on), c %v (private, want off)", a.NAT().RelayService, c.NAT().RelayService)
	}
}

// noInbound is a firewall that drops every inbound connection.
type noInbound struct{}

func (noInbound) InterceptPeerDial(peer.ID) bool               { return true }
func (noInbound) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }
func (noInbound) InterceptAccept(network.ConnMultiaddrs) bool  { return false }
func (noInbound) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (noInbound) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func TestHolePunchRetriesBackOff(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		a    attempts
		want bool
	}{
		{attempts{}, true},
		{attempts{last: now.Add(-9 * time.Second), n: 1}, false},
		{attempts{last: now.Add(-11 * time.Second), n: 1}, true},
		{attempts{last: now.Add(-11 * time.Second), n: 2}, false}, // 20 s after the second
		{attempts{last: now.Add(-21 * time.Second), n: 2}, true},
		{attempts{last: now.Add(-9 * time.Minute), n: 50}, false}, // capped at 10 min
		{attempts{last: now.Add(-11 * time.Minute), n: 50}, true},
	} {
		if got := tc.a.due(now); got != tc.want {
			t.Errorf("%d attempts, last %s ago: due = %v, want %v", tc.a.n, now.Sub(tc.a.last), got, tc.want)
		}
	}
}

func TestObservedIPGetsTheQUICListenPort(t *testing.T) {
	listen := []ma.Multiaddr{
		ma.StringCast("/ip4/10.77.2.2/tcp/4001"),
		ma.StringCast("/ip4/10.77.2.2/udp/4001/quic-v1"),
		ma.StringCast("/ip6/::1/udp/4002/quic-v1"),
	}
	got := withQUICPorts(ma.StringCast("/ip4/10.77.0.3/tcp/37200"), listen)
	if len(got) != 1 || got[0].String() != "/ip4/10.77.0.3/udp/4001/quic-v1" {
		t.Fatalf("withQUICPorts = %v, want [/ip4/10.77.0.3/udp/4001/quic-v1]", got)
	}
	if got := withQUICPorts(ma.StringCast("/dns4/example.org/tcp/1"), listen); got != nil {
		t.Fatalf("a DNS observation gave %v", got)
	}
}

func TestNATConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		nat  NATConfig
		want string
	}{
		{NATConfig{Reachability: "sometimes"}, "nat.reachability"},
		{NATConfig{Relays: []string{"/ip4/1.2.3.4/tcp/1"}}, "nat.relays[0]"},
		{NATConfig{NumRelays: 99}, "nat.num_relays"},
		{NATConfig{ProbeInterval: time.Millisecond}, "nat.probe_interval"},
		{NATConfig{Relay: RelayLimits{Duration: -time.Second}}, "nat.relay"},
	} {
		err := (Config{NAT: tc.nat}).withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.nat, err, tc.want)
		}
	}
	if err := (Config{}).withDefaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if got := (Config{}).withDefaults().NAT; got.Reachability != "auto" || got.NumRelays != DefaultNumRelays {
		t.Fatalf("defaults = %+v", got)
	}
}
