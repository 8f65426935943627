package mesh

import (
	"bytes"
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// newHost builds the libp2p host: TCP and QUIC (TCP only with a swarm
// key), Noise and TLS, yamux, a resource manager with explicit limits, a
// connection manager and the circuit relay v2 transport (dialing through
// relays and accepting relayed connections). addrs adds to the addresses
// the host announces (relay addresses). Extra options come last (tests
// use them to swap the network).
func newHost(id *Identity, cfg Config, addrs func([]ma.Multiaddr) []ma.Multiaddr, extra ...libp2p.Option) (host.Host, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	scaled := limits.Scale(cfg.MaxMemoryMB<<20, cfg.MaxFDs)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(scaled))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh)
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "pcm"
	}
	opts := []libp2p.Option{
		libp2p.Identity(id.PrivKey()),
		libp2p.UserAgent(ua),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.EnableRelay(),
	}
	if addrs != nil {
		opts = append(opts, libp2p.AddrsFactory(addrs))
	}
	tr, err := transportOptions(cfg)
	if err != nil {
		rm.Close()
		return nil, err
	}
	opts = append(opts, tr...)
	listen := cfg.Listen
	if len(cfg.SwarmKey) > 0 {
		listen = tcpOnly(listen)
	}
	opts = append(opts, libp2p.ListenAddrStrings(listen...))
	opts = append(opts, extra...)
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		if lerr := checkBindable(listen); lerr != nil {
			return nil, lerr
		}
		return nil, fmt.Errorf("start libp2p host on %v: %w", listen, err)
	}
	if err := checkListening(h.Network().ListenAddresses(), listen); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// transportOptions are the transports, security and muxer every host of
// this node uses (the mesh host and the AutoNAT dial-back host).
func transportOptions(cfg Config) ([]libp2p.Option, error) {
	opts := []libp2p.Option{
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		// Without SO_REUSEPORT a second agent on a taken port fails to
		// bind instead of sharing it (dials would land on either process).
		// It also means TCP dials leave from random ports, so hole
		// punching works over QUIC only (see PROTOCOL.md).
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
	}
	if len(cfg.SwarmKey) > 0 {
		psk, err := pnet.DecodeV1PSK(bytes.NewReader(cfg.SwarmKey))
		if err != nil {
			return nil, fmt.Errorf("swarm key: %w (expected /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits)", err)
		}
		return append(opts, libp2p.PrivateNetwork(psk)), nil
	}
	return append(opts, libp2p.Transport(quic.NewTransport)), nil
}

// tcpOnly drops non-TCP listen addresses (a private network cannot use QUIC).
func tcpOnly(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			continue
		}
		if _, err := m.ValueForProtocol(ma.P_TCP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// ParseAddrInfo parses a multiaddr that ends in /p2p/<peer id>.
func ParseAddrInfo(s string) (peer.AddrInfo, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%q is not a multiaddr: %w", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%q needs a /p2p/<peer id> suffix (see `pcm-agent id` on that peer): %w", s, err)
	}
	return *ai, nil
}
