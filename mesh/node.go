package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// Node is one agent's presence in the mesh.
type Node struct {
	cfg   Config
	id    *Identity
	log   *slog.Logger
	host  host.Host
	given bool // host supplied by the caller (mocknet); not closed by us
	extra []libp2p.Option

	dht       *dht.IpfsDHT
	ps        *pubsub.PubSub
	topic     *pubsub.Topic
	validator *Validator
	table     *Table
	nat       *nat

	mu       sync.Mutex
	source   func() Advert
	seq      uint64
	provided map[string]*ProvidedKey
	topics   map[string]*pubsub.Topic

	kick      chan struct{}
	greeting  atomic.Bool
	dialing   atomic.Int32 // discovery dials in flight (learnAddrs)
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Option adjusts a Node.
type Option func(*Node)

// WithHost makes the node use an existing host (e.g. from libp2p's mocknet)
// instead of building one; the host's identity must be id's.
func WithHost(h host.Host) Option { return func(n *Node) { n.host, n.given = h, true } }

// withLibp2p adds options to the host the node builds (tests: a
// connection gater that stands in for a NAT on loopback).
func withLibp2p(opts ...libp2p.Option) Option {
	return func(n *Node) { n.extra = append(n.extra, opts...) }
}

// New prepares a node; Start brings it up.
func New(id *Identity, cfg Config, log *slog.Logger, opts ...Option) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	n := &Node{
		cfg: cfg, id: id, log: log.With("component", "mesh"),
		table:    NewTable(nil),
		provided: map[string]*ProvidedKey{},
		topics:   map[string]*pubsub.Topic{},
		kick:     make(chan struct{}, 1),
	}
	n.validator = NewValidator(cfg.MaxClockSkew, nil, n.log)
	var relays []peer.AddrInfo
	for _, a := range append(slices.Clone(cfg.NAT.Relays), cfg.Bootstrap...) {
		if ai, err := ParseAddrInfo(a); err == nil && ai.ID.String() != id.ID() {
			relays = append(relays, ai)
		}
	}
	n.nat = newNAT(cfg.NAT, relays, n.log.With("component", "nat"), n.Republish)
	for _, o := range opts {
		o(n)
	}
	return n, nil
}

// Start starts the host, DHT and gossipsub, joins through the bootstrap
// peers and begins advertising (once SetAdvertSource has been called).
// maxGossipRPC bounds one gossipsub RPC.
const maxGossipRPC = 4 << 20

func (n *Node) Start(ctx context.Context) error {
	if n.host == nil {
		h, err := newHost(n.id, n.cfg, n.nat.addrs, n.extra...)
		if err != nil {
			return err
		}
		n.host = h
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if !n.given {
		// A supplied host (mocknet) has no transports to traverse NAT with.
		tr, err := transportOptions(n.cfg)
		if err == nil {
			err = n.nat.start(n.host, n.table, tr)
		}
		if err != nil {
			n.Close()
			return fmt.Errorf("nat traversal: %w", err)
		}
	}
	if err := n.startRouting(); err != nil {
		n.Close()
		return err
	}
	if err := n.startPubSub(runCtx); err != nil {
		n.Close()
		return err
	}
	n.connectBootstrap(ctx)
	n.wg.Go(func() { n.advertLoop(runCtx) })
	n.wg.Go(func() { n.expireLoop(runCtx) })
	n.wg.Go(func() { n.bootstrapLoop(runCtx) })
	n.wg.Go(func() { n.reprovideLoop(runCtx) })
	n.log.Info("mesh started", "peer", n.id.ID(), "addrs", n.Addrs())
	return nil
}

func (n *Node) startRouting() error {
	if n.cfg.DisableDHT {
		return nil
	}
	var boots []peer.AddrInfo
	for _, b := range n.cfg.Bootstrap {
		ai, err := ParseAddrInfo(b)
		if err != nil {
			return err
		}
		boots = append(boots, ai)
	}
	d, err := dht.New(n.host,
		dht.ProtocolPrefix("/pcm"),
		dht.Mode(dht.ModeServer),
		dht.BootstrapPeers(boots...),
	)
	if err != nil {
		return fmt.Errorf("start kad-dht: %w", err)
	}
	n.dht = d
	return nil
}

func (n *Node) startPubSub(ctx context.Context) error {
	params, thresholds := scoreParams()
	ps, err := pubsub.NewGossipSub(ctx, n.host,
		pubsub.WithMessageSigning(true),
		pubsub.WithStrictSignatureVerification(true),
		pubsub.WithPeerScore(params, thresholds),
		// Larger than any valid message so oversized adverts (up to this
		// size) reach the validator and are counted; beyond it gossipsub's
		// reader drops the RPC before any validator runs.
		pubsub.WithMaxMessageSize(maxGossipRPC),
		pubsub.WithSeenMessagesTTL(seenMessagesTTL),
	)
	if err != nil {
		return fmt.Errorf("start gossipsub: %w", err)
	}
	n.ps = ps
	if err := ps.RegisterTopicValidator(AdvertsTopic, n.validator.Validate); err != nil {
		return fmt.Errorf("register advert validator: %w", err)
	}
	t, err := ps.Join(AdvertsTopic)
	if err != nil {
		return fmt.Errorf("join %s: %w", AdvertsTopic, err)
	}
	n.topic = t
	sub, err := t.Subscribe()
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", AdvertsTopic, err)
	}
	n.wg.Go(func() { n.readAdverts(ctx, sub) })
	events, err := t.EventHandler()
	if err != nil {
		return fmt.Errorf("watch %s peers: %w", AdvertsTopic, err)
	}
	n.wg.Go(func() { n.greetNewPeers(ctx, events) })
	return nil
}

// greetNewPeers republishes the advert when a peer new to the mesh joins
// the adverts topic, so it learns about us now rather than an interval
// later.
func (n *Node) greetNewPeers(ctx context.Context, events *pubsub.TopicEventHandler) {
	defer events.Cancel()
	for {
		ev, err := events.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			n.log.Debug("peer joined adverts topic", "peer", ev.Peer)
			// Only a peer we have no advert from is new to the mesh; the
			// others (a broker dialling us to negotiate) already know us,
			// and a greeting reaches every agent, not just the newcomer.
			if _, known := n.table.Get(ev.Peer.String()); known {
				continue
			}
			// The peer's pubsub stream may still be opening: a message
			// sent at once can be lost, so greet it a moment later. Many
			// joins at once (a mesh starting) share one greeting.
			if n.greeting.CompareAndSwap(false, true) {
				time.AfterFunc(250*time.Millisecond, func() {
					n.greeting.Store(false)
					n.Republish()
				})
			}
		}
	}
}

// scoreParams penalises peers that send invalid messages. IP colocation is
// not scored: a test mesh lives on one loopback address.
// seenMessagesTTL is how long gossipsub remembers a message id (its
// duplicate filter, and the peer score's delivery records): 30 s instead
// of gossipsub's 2 min. It is far longer than gossip carries a message (5
// heartbeats), and a replayed advert is refused by its sequence number
// anyway. Each agent keeps one record per advert of every peer for this
// long: at 2 min the records of 100 agents in one process were 110 MB.
const seenMessagesTTL = 30 * time.Second

func scoreParams() (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	p := &pubsub.PeerScoreParams{
		SeenMsgTTL:                seenMessagesTTL,
		AppSpecificScore:          func(peer.ID) float64 { return 0 },
		AppSpecificWeight:         1,
		BehaviourPenaltyWeight:    -10,
		BehaviourPenaltyThreshold: 6,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(time.Minute),
		DecayInterval:             time.Second,
		DecayToZero:               0.01,
		RetainScore:               10 * time.Minute,
		Topics: map[string]*pubsub.TopicScoreParams{
			AdvertsTopic: {
				TopicWeight:                    1,
				TimeInMeshWeight:               0.01,
				TimeInMeshQuantum:              time.Second,
				TimeInMeshCap:                  10,
				FirstMessageDeliveriesWeight:   1,
				FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
				FirstMessageDeliveriesCap:      50,
				InvalidMessageDeliveriesWeight: -100,
				InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
			},
		},
	}
	t := &pubsub.PeerScoreThresholds{
		GossipThreshold:             -100,
		PublishThreshold:            -500,
		GraylistThreshold:           -1000,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 2,
	}
	return p, t
}

func (n *Node) readAdverts(ctx context.Context, sub *pubsub.Subscription) {
	defer sub.Cancel()
	for {
		msg, err := sub.Next(ctx)
		if err != nil {
			return
		}
		a, ok := msg.ValidatorData.(*Advert)
		if !ok {
			continue
		}
		n.table.Put(a)
		n.learnAddrs(a)
	}
}

// learnAddrs puts an advertised provider's addresses in the peerstore and,
// while this node has fewer than DiscoverPeers connections, dials it:
// adverts double as peer discovery so negotiation streams need no DHT
// lookup.
func (n *Node) learnAddrs(a *Advert) {
	pid, err := peer.Decode(a.Provider)
	if err != nil || pid == n.host.ID() {
		return
	}
	var addrs []ma.Multiaddr
	for _, s := range a.Addrs {
		if m, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, m)
		}
	}
	n.host.Peerstore().AddAddrs(pid, addrs, a.TTL()+time.Minute)
	if n.host.Network().Connectedness(pid) == network.Connected {
		return
	}
	// Dials in flight count: a burst of adverts must not start a dial to
	// every author while the first connections are still being made.
	if d := n.dialing.Add(1); len(n.host.Network().Peers())+int(d) > n.cfg.DiscoverPeers {
		n.dialing.Add(-1)
		return
	}
	go func() {
		defer n.dialing.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.host.Connect(ctx, peer.AddrInfo{ID: pid})
	}()
}

// connectBootstrap dials every bootstrap peer once, in parallel.
func (n *Node) connectBootstrap(ctx context.Context) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for _, b := range n.cfg.Bootstrap {
		ai, err := ParseAddrInfo(b)
		if err != nil || ai.ID == n.host.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := n.host.Connect(cctx, ai); err != nil {
				n.log.Warn("bootstrap peer unreachable", "addr", b, "err", err)
				return
			}
			n.host.ConnManager().Protect(ai.ID, "bootstrap")
			mu.Lock()
			ok++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ok
}

// bootstrapLoop retries bootstrap peers while the node has no peers at all.
func (n *Node) bootstrapLoop(ctx context.Context) {
	if len(n.cfg.Bootstrap) == 0 {
		return
	}
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if len(n.host.Network().Peers()) == 0 {
			n.connectBootstrap(ctx)
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = 5 * time.Second
		}
	}
}

// ensureAddrs makes sure the peerstore can reach id, asking the DHT when
// neither a connection nor known addresses exist.
func (n *Node) ensureAddrs(ctx context.Context, id string) (peer.ID, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return "", fmt.Errorf("%q is not a peer id: %w", id, err)
	}
	if n.host.Network().Connectedness(pid) == network.Connected || len(n.host.Peerstore().Addrs(pid)) > 0 {
		return pid, nil
	}
	if e, ok := n.table.Get(id); ok {
		n.learnAddrs(e.Advert)
		return pid, nil
	}
	if n.dht != nil {
		ai, err := n.dht.FindPeer(ctx, pid)
		if err != nil {
			return "", fmt.Errorf("find peer %s: %w", id, err)
		}
		n.host.Peerstore().AddAddrs(pid, ai.Addrs, peerstore.TempAddrTTL)
	}
	return pid, nil
}

// NewStream opens a stream of protocol p to peer id. It may use a relayed
// connection, even a limited one (see nat.go): with no direct connection
// yet, the relay is the only way to a peer behind NAT.
func (n *Node) NewStream(ctx context.Context, id string, p protocol.ID) (network.Stream, error) {
	return n.NewStreamOneOf(ctx, id, p)
}

// NewStreamOneOf opens a stream of the first of ps, in order of
// preference, that peer id speaks (the stream's Protocol says which).
// When the peer's protocols are known (identify), no round trip is spent
// choosing.
func (n *Node) NewStreamOneOf(ctx context.Context, id string, ps ...protocol.ID) (network.Stream, error) {
	pid, err := n.ensureAddrs(ctx, id)
	if err != nil {
		return nil, err
	}
	s, err := n.host.NewStream(AllowRelayed(ctx), pid, ps...)
	if err != nil {
		return nil, fmt.Errorf("open %s to %s: %w", ps[0], id, err)
	}
	return s, nil
}

// AllowRelayed lets streams opened with ctx use relayed connections that
// the relay limits (libp2p refuses them otherwise).
func AllowRelayed(ctx context.Context) context.Context {
	return network.WithAllowLimitedConn(ctx, "pcm")
}

// Handle serves inbound streams of protocol p.
func (n *Node) Handle(p protocol.ID, h network.StreamHandler) { n.host.SetStreamHandler(p, h) }

// Close stops every loop, then the pubsub, DHT and host. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		var errs []error
		n.mu.Lock()
		for _, t := range n.topics {
			_ = t.Close()
		}
		n.mu.Unlock()
		if n.dht != nil {
			errs = append(errs, n.dht.Close())
		}
		errs = append(errs, n.nat.close())
		if n.host != nil && !n.given {
			errs = append(errs, n.host.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
