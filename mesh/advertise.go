package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
)

// SetAdvertSource sets the function that describes this provider; its
// result is stamped (provider, seq, time, ttl, addrs) and published at
// every interval and on Republish.
func (n *Node) SetAdvertSource(src func() Advert) {
	n.mu.Lock()
	n.source = src
	n.mu.Unlock()
	n.Republish()
}

// Republish publishes the advert now (e.g. after capacity changed).
func (n *Node) Republish() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *Node) advertLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.AdvertInterval)
	defer t.Stop()
	for tickOrKick(ctx, t.C, n.kick) {
		if err := n.publishAdvert(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("publish advert", "err", err)
		}
		// Capacity changes with every task start and end: coalesce them
		// into at most one advert per gap instead of flooding the topic.
		select {
		case <-ctx.Done():
			return
		case <-time.After(RepublishGap(n.cfg.AdvertInterval)):
		}
	}
}

// tickOrKick waits for the next tick or a kick; false once ctx is done.
func tickOrKick(ctx context.Context, tick <-chan time.Time, kick <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return false
	case <-tick:
	case <-kick:
	}
	return true
}

// RepublishGap is the least time between two adverts: a tenth of the
// interval, between 100ms and 1s. Every advert reaches every agent, so a
// mesh of N busy providers carries N/gap adverts a second; bids, not
// adverts, are the authority on capacity, so a late advert costs at most
// a decline.
func RepublishGap(interval time.Duration) time.Duration {
	return min(interval, max(100*time.Millisecond, min(interval/10, time.Second)))
}

// NextAdvert stamps the advert source's output; nil when there is none.
func (n *Node) NextAdvert() *Advert {
	n.mu.Lock()
	src := n.source
	if src == nil {
		n.mu.Unlock()
		return nil
	}
	now := time.Now()
	// Microseconds, not nanoseconds: the value stays below 2^53, so a
	// JavaScript client's JSON.parse reads it exactly (until year 2255).
	n.seq = max(n.seq+1, uint64(now.UnixMicro()))
	seq := n.seq
	n.mu.Unlock()
	a := src()
	a.V = AdvertVersion
	a.Provider = n.id.ID()
	a.Seq = seq
	a.Time = now.UTC()
	a.TTLSeconds = n.cfg.AdvertTTL.Seconds()
	a.Addrs = n.Addrs()
	a.Reachability = n.nat.reachability()
	return &a
}

func (n *Node) publishAdvert(ctx context.Context) error {
	a := n.NextAdvert()
	if a == nil {
		return nil
	}
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode advert: %w", err)
	}
	if len(b) > MaxAdvertSize {
		return fmt.Errorf("%w: own advert is %d bytes (limit %d); trim attributes or labels", ErrTooLarge, len(b), MaxAdvertSize)
	}
	return n.topic.Publish(ctx, b)
}

func (n *Node) expireLoop(ctx context.Context) {
	every := min(time.Second, max(n.cfg.AdvertTTL/20, 10*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.table.Expire()
			n.validator.prune()
		}
	}
}

// JoinTopic joins (once) a gossipsub topic, e.g. a framework topic.
func (n *Node) JoinTopic(name string) (*pubsub.Topic, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok := n.topics[name]; ok {
		return t, nil
	}
	t, err := n.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("join topic %s: %w", name, err)
	}
	n.topics[name] = t
	return t, nil
}

// PubSub exposes gossipsub for topic-level work (validators on framework
// topics).
func (n *Node) PubSub() *pubsub.PubSub { return n.ps }

// Host is the libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Identity is the node's identity.
func (n *Node) Identity() *Identity { return n.id }

// Table is the resource table.
func (n *Node) Table() *Table { return n.table }

// ValidatorStats reports the advert validator's counters.
func (n *Node) ValidatorStats() ValidatorStats { return n.validator.Stats() }

// Addrs are the node's full multiaddrs (with /p2p/<id>).
func (n *Node) Addrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, n.host.ID()))
	}
	return out
}

// PeerInfo describes one connected peer.
type PeerInfo struct {
	ID        string   `json:"id"`
	Addrs     []string `json:"addrs"`
	Direction string   `json:"direction"`
	LatencyMS float64  `json:"latency_ms"`
	Provider  bool     `json:"provider"`
	// Conns are the open connections, direct or through a relay.
	Conns []ConnInfo `json:"conns"`
	// RelayedAt is when the peer was first reached through a relay (no
	// direct connection yet then); DirectAt when a direct connection (hole
	// punched, or dialled) followed. Absent when they did not happen.
	RelayedAt *time.Time `json:"relayed_at,omitempty"`
	DirectAt  *time.Time `json:"direct_at,omitempty"`
	// TimeToDirectMS is DirectAt - RelayedAt in milliseconds.
	TimeToDirectMS float64 `json:"time_to_direct_ms,omitempty"`
}

// ConnInfo is one connection to a peer.
type ConnInfo struct {
	Addr      string    `json:"addr"`
	Direction string    `json:"direction"`
	Relayed   bool      `json:"relayed"`
	Limited   bool      `json:"limited,omitempty"`
	Since     time.Time `json:"since"`
}

// Peers lists connected peers.
func (n *Node) Peers() []PeerInfo {
	var out []PeerInfo
	for _, pid := range n.host.Network().Peers() {
		pi := PeerInfo{ID: pid.String(), Conns: []ConnInfo{}}
		for _, c := range n.host.Network().ConnsToPeer(pid) {
			st := c.Stat()
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr().String())
			pi.Direction = st.Direction.String()
			pi.Conns = append(pi.Conns, ConnInfo{
				Addr: c.RemoteMultiaddr().String(), Direction: st.Direction.String(),
				Relayed: isCircuit(c.RemoteMultiaddr()), Limited: st.Limited, Since: st.Opened.UTC(),
			})
		}
		if r, d := n.nat.historyOf(pid); !r.IsZero() {
			r = r.UTC()
			pi.RelayedAt = &r
			if !d.IsZero() {
				d = d.UTC()
				pi.DirectAt = &d
				pi.TimeToDirectMS = float64(d.Sub(r).Microseconds()) / 1000
			}
		}
		pi.LatencyMS = float64(n.host.Peerstore().LatencyEWMA(pid).Microseconds()) / 1000
		_, pi.Provider = n.table.Get(pid.String())
		out = append(out, pi)
	}
	return out
}

// NAT reports reachability, the relay service and reservations.
func (n *Node) NAT() NATStatus { return n.nat.status() }
