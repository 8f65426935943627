package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// startNode starts a node on loopback with free ports.
func startNode(t *testing.T, bootstrap []string, swarmKey []byte) *Node {
	t.Helper()
	return startNodeWith(t, Config{Bootstrap: bootstrap, SwarmKey: swarmKey})
}

// startNodeWith starts a node on loopback with free ports and fast
// adverts; cfg supplies the rest.
func startNodeWith(t *testing.T, cfg Config, opts ...Option) *Node {
	t.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.AdvertInterval, cfg.AdvertTTL = 200*time.Millisecond, time.Second
	n, err := New(id, cfg, testLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	n.SetAdvertSource(func() Advert {
		return Advert{Drivers: []DriverInfo{{Name: "local"}}, Total: map[string]float64{"cpu": 1}, Free: map[string]float64{"cpu": 1}}
	})
	return n
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdvertsPropagateAlongAChain(t *testing.T) {
	var nodes []*Node
	for i := range 4 {
		var boot []string
		if i > 0 {
			boot = nodes[i-1].Addrs()[:1]
		}
		nodes = append(nodes, startNode(t, boot, nil))
	}
	for i, n := range nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to see 4 providers", i), func() bool { return n.Table().Len() == 4 })
	}
	gone := nodes[3].Identity().ID()
	nodes[3].Close()
	for i, n := range nodes[:3] {
		waitFor(t, 5*time.Second, fmt.Sprintf("node %d to drop the stopped provider", i), func() bool {
			_, ok := n.Table().Get(gone)
			return !ok
		})
	}
}

func TestForgedAdvertIsRejectedOverGossip(t *testing.T) {
	a := startNode(t, nil, nil)
	b := startNode(t, a.Addrs()[:1], nil)
	waitFor(t, 10*time.Second, "both providers seen", func() bool { return a.Table().Len() == 2 })
	victim, _ := GenerateIdentity()
	forged := b.NextAdvert()
	forged.Provider = victim.ID()
	data, _ := json.Marshal(forged)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// b's own validator refuses it first: a node cannot even publish it.
	if err := b.topic.Publish(ctx, data); err == nil {
		t.Fatal("publishing an advert for another provider succeeded")
	}
	if got := b.ValidatorStats().Rejected[ReasonSigner]; got != 1 {
		t.Fatalf("forged_signer count = %d, want 1", got)
	}
	if _, ok := a.Table().Get(victim.ID()); ok {
		t.Fatal("forged advert reached a peer's table")
	}
}

func TestSwarmKeyKeepsOutsidersOut(t *testing.T) {
	key := []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	a := startNode(t, nil, key)
	insider := startNode(t, a.Addrs()[:1], key)
	waitFor(t, 10*time.Second, "insider to connect", func() bool { return len(insider.Host().Network().Peers()) == 1 })

	outsider := startNode(t, nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	ai, _ := ParseAddrInfo(a.Addrs()[0])
	if err := outsider.Host().Connect(ctx, ai); err == nil {
		t.Fatal("an agent without the swarm key connected to a private network")
	}
	waitFor(t, 10*time.Second, "the private mesh to see both providers", func() bool { return a.Table().Len() == 2 })
	if _, ok := a.Table().Get(outsider.Identity().ID()); ok {
		t.Fatal("the outsider's advert reached the private mesh")
	}
}

// A node dials the authors of adverts it receives only until it has
// DiscoverPeers connections (dials in flight included): adverts still
// reach every node through the others, without every node connecting to
// every other.
func TestAdvertsDialOnlyUpToDiscoverPeers(t *testing.T) {
	// A star: five leaves bootstrap from a hub and seek no one else. (The
	// DHT is off: its routing table refresh dials peers of its own.)
	hub := startNodeWith(t, Config{DiscoverPeers: 1, DisableDHT: true})
	var leaves []*Node
	for range 5 {
		leaves = append(leaves, startNodeWith(t, Config{Bootstrap: hub.Addrs()[:1], DiscoverPeers: 1, DisableDHT: true}))
	}
	seeker := startNodeWith(t, Config{Bootstrap: hub.Addrs()[:1], DiscoverPeers: 3, DisableDHT: true})
	all := append([]*Node{hub, seeker}, leaves...)
	for i, n := range all {
		waitFor(t, 15*time.Second, fmt.Sprintf("node %d to see all 7 providers", i), func() bool { return n.Table().Len() == 7 })
	}
	// Adverts keep arriving (every 200 ms): let a few more rounds pass.
	time.Sleep(time.Second)
	if got := len(seeker.Host().Network().Peers()); got != 3 {
		t.Errorf("the node seeking 3 peers has %d", got)
	}
	if got := len(leaves[0].Host().Network().Peers()) + len(leaves[1].Host().Network().Peers()) + len(leaves[2].Host().Network().Peers()) +
		len(leaves[3].Host().Network().Peers()) + len(leaves[4].Host().Network().Peers()); got != 5+2 {
		t.Errorf("the leaves have %d connections; want one each to the hub and two to the seeker", got)
	}
	// A node seeking more connects to every author it hears of.
	greedy := startNodeWith(t, Config{Bootstrap: hub.Addrs()[:1], DiscoverPeers: 16, DisableDHT: true})
	waitFor(t, 15*time.Second, "the greedy node to connect to all 7 others", func() bool { return len(greedy.Host().Network().Peers()) == 7 })
}
