package consensus

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestLeaderCutOffMajorityElects: the leader of a 3-voter ledger over
// libp2p is cut off without a word to its peers (a pulled cable, as
// testnet/netns.sh --partition does): the other two elect a leader within
// a few election timeouts, keep answering Members and Entries, and after
// the heal every node is on one head again (issue #12).
func TestLeaderCutOffMajorityElects(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := newTestCluster(t, 3, false, nil)
	c.cables = newCableSwitch()
	formCluster(t, c, 3)
	eventually(t, 20*time.Second, "3 voters", func() bool {
		return len(membership(t, c.nodes[0].Ledger()).Voters) == 3
	})
	ld := c.leader(10 * time.Second)
	broker, provider := newSigner(t), newSigner(t)
	if _, err := c.nodes[ld].Ledger().Propose(t.Context(), agreementEntry(t, broker, provider, "before", 1)); err != nil {
		t.Fatal(err)
	}

	for round := range 3 {
		ld = c.leader(10 * time.Second)
		t.Logf("round %d: cutting off leader %d", round, ld)
		c.cables.set(c.nodes[ld].signer.ID(), true)
		cut := time.Now()
		newLeader := -1
		eventually(t, 15*time.Second, "a leader on the majority side", func() bool {
			for i, n := range c.nodes {
				if i != ld && n.Ledger().IsLeader() {
					newLeader = i
					return true
				}
			}
			return false
		})
		t.Logf("round %d: node %d leads %s after the cut", round, newLeader, time.Since(cut).Round(time.Millisecond))
		for i, n := range c.nodes {
			if i == ld {
				continue
			}
			// What testnet/netns.sh asks the majority, with its curl's 3 s.
			l := n.Ledger()
			start := time.Now()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			if _, err := l.Members(ctx); err != nil {
				t.Errorf("round %d: node %d members: %v", round, i, err)
			}
			if _, err := l.Entries(ctx, Filter{Type: TypeAgreement}); err != nil {
				t.Errorf("round %d: node %d entries: %v", round, i, err)
			}
			cancel()
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("round %d: node %d took %s to answer members and entries; the API has 3 s", round, i, took.Round(time.Millisecond))
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if _, err := c.nodes[newLeader].Ledger().Propose(ctx, agreementEntry(t, broker, provider, "cut-"+string(rune('a'+round)), 1)); err != nil {
			t.Fatalf("round %d: propose on the majority side: %v", round, err)
		}
		cancel()
		c.cables.set(c.nodes[ld].signer.ID(), false)
		eventually(t, 20*time.Second, "one head after the heal", func() bool {
			i0, _ := c.nodes[0].Ledger().Head()
			for _, n := range c.nodes[1:] {
				if i, _ := n.Ledger().Head(); i != i0 {
					return false
				}
			}
			return true
		})
	}
}

// TestJoinPastAnUnreachablePeer: a node that joins through a list whose
// first peer's network is down still gets in through the next one. Each
// peer's request used to last as long as the whole join's context (a
// minute for an agent's rejoin) or until QUIC gave the connection up
// (30 s), so the peers after a dead one were asked late or never.
func TestJoinPastAnUnreachablePeer(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := newTestCluster(t, 4, false, nil)
	c.cables = newCableSwitch()
	formCluster(t, c, 3)
	eventually(t, 20*time.Second, "3 voters", func() bool {
		return len(membership(t, c.nodes[0].Ledger()).Voters) == 3
	})
	// A follower drops off the network; the other two keep a leader.
	ld := c.leader(10 * time.Second)
	cut := (ld + 1) % 3
	l := c.start(3, false)
	// The joiner is connected to that peer already (as agents of a mesh
	// are), so a request to it opens a stream at once and then waits.
	h, dead := c.nodes[3].host, c.nodes[cut].host
	if err := h.Connect(t.Context(), peer.AddrInfo{ID: dead.ID(), Addrs: dead.Addrs()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the joiner to know the peer speaks the ledger protocol", func() bool {
		p, _ := h.Peerstore().SupportsProtocols(dead.ID(), LedgerProtocol)
		return len(p) == 1
	})
	c.cables.set(c.nodes[cut].signer.ID(), true)
	// Less than QUIC's 30 s idle timeout, which ended the wait before.
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	start := time.Now()
	role, err := l.Join(ctx, c.ids(cut, ld))
	if err != nil {
		t.Fatalf("join through an unreachable peer, then the leader: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("joined as %s after %s", role, time.Since(start).Round(time.Millisecond))
}
