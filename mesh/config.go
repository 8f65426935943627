package mesh

import (
	"errors"
	"fmt"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// Config configures a Node. Zero values take the defaults of DefaultConfig.
type Config struct {
	// Listen are the multiaddrs to listen on (TCP and QUIC by default).
	Listen []string
	// UserAgent is what libp2p's identify protocol reports to peers
	// (the agent sets "pcm/<version>"); empty: "pcm".
	UserAgent string
	// Bootstrap are multiaddrs with /p2p/<peer id> of peers to join through.
	Bootstrap []string
	// SwarmKey, when set, makes a private network (PSK, TCP only): peers
	// without the same key cannot connect. It is the file's content.
	SwarmKey []byte
	// DisableDHT turns the kad-dht off (in-process tests of thousands of
	// agents that do not need it).
	DisableDHT bool
	// NAT configures reachability probes, relays and hole punching.
	NAT NATConfig

	// ReprovideInterval is how often every provided DHT key is provided
	// again, well inside the records' lifetime (kad-dht keeps provider
	// records 48 h); default 12 h.
	ReprovideInterval time.Duration

	// AdvertInterval is how often the local advert is republished.
	AdvertInterval time.Duration
	// AdvertTTL is how long peers keep an advert (default 3 intervals).
	AdvertTTL time.Duration
	// MaxClockSkew bounds how far an advert's time may be from ours.
	MaxClockSkew time.Duration

	// Connection manager watermarks.
	ConnLow, ConnHigh int
	// DiscoverPeers is how many connections a node seeks on its own: while
	// it has fewer, it dials the authors of the adverts it receives
	// (default 32, well above gossipsub's mesh degree of 6 to 12). More
	// connections only add gossip: with every agent connected to every
	// other, gossipsub sends its IHAVE gossip to a quarter of all peers
	// each heartbeat and keeps a stream and state per pair. Negotiation
	// and the ledger dial the peers they need.
	DiscoverPeers int
	// Resource manager limits for the whole host.
	MaxMemoryMB int64
	MaxFDs      int
}

// Defaults for Config.
const (
	DefaultPort           = 4001
	DefaultAdvertInterval = 10 * time.Second
	DefaultMaxClockSkew   = 2 * time.Minute
	// DefaultReprovideInterval is a quarter of kad-dht's 48 h record life.
	DefaultReprovideInterval = 12 * time.Hour
)

// DefaultConfig listens on all interfaces, port 4001, TCP and QUIC.
func DefaultConfig() Config {
	return Config{
		Listen:         ListenAddrs("0.0.0.0", DefaultPort),
		AdvertInterval: DefaultAdvertInterval,
		AdvertTTL:      3 * DefaultAdvertInterval,
		MaxClockSkew:   DefaultMaxClockSkew,
		ConnLow:        64,
		ConnHigh:       192,
		DiscoverPeers:  32,
		MaxMemoryMB:    512,
		MaxFDs:         1024,
	}
}

// ListenAddrs returns the TCP and QUIC multiaddrs for ip:port.
func ListenAddrs(ip string, port int) []string {
	proto := "ip4"
	if len(ip) > 0 && (ip[0] == '[' || containsColon(ip)) {
		proto = "ip6"
	}
	return []string{
		fmt.Sprintf("/%s/%s/tcp/%d", proto, ip, port),
		fmt.Sprintf("/%s/%s/udp/%d/quic-v1", proto, ip, port),
	}
}

func containsColon(s string) bool {
	for i := range len(s) {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Listen) == 0 {
		c.Listen = d.Listen
	}
	if c.AdvertInterval == 0 {
		c.AdvertInterval = d.AdvertInterval
	}
	if c.AdvertTTL == 0 {
		c.AdvertTTL = 3 * c.AdvertInterval
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = d.MaxClockSkew
	}
	if c.ReprovideInterval == 0 {
		c.ReprovideInterval = DefaultReprovideInterval
	}
	if c.ConnLow == 0 {
		c.ConnLow = d.ConnLow
	}
	if c.ConnHigh == 0 {
		c.ConnHigh = d.ConnHigh
	}
	if c.DiscoverPeers == 0 {
		c.DiscoverPeers = d.DiscoverPeers
	}
	if c.MaxMemoryMB == 0 {
		c.MaxMemoryMB = d.MaxMemoryMB
	}
	if c.MaxFDs == 0 {
		c.MaxFDs = d.MaxFDs
	}
	c.NAT = c.NAT.withDefaults()
	return c
}

// Validate checks the configuration and names the bad field.
func (c Config) Validate() error {
	var errs []error
	for i, a := range c.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			errs = append(errs, fmt.Errorf("listen[%d] %q is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/4001): %w", i, a, err))
		}
	}
	if c.ReprovideInterval < 0 || c.ReprovideInterval > 0 && c.ReprovideInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("reprovide_interval %s: use at least 100ms, and well under the 48h life of DHT provider records (default 12h)", c.ReprovideInterval))
	}
	for i, a := range c.Bootstrap {
		if _, err := ParseAddrInfo(a); err != nil {
			errs = append(errs, fmt.Errorf("bootstrap[%d]: %w", i, err))
		}
	}
	if c.AdvertInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("advert_interval %s is too short; use at least 10ms", c.AdvertInterval))
	}
	if c.AdvertTTL < c.AdvertInterval {
		errs = append(errs, fmt.Errorf("advert_ttl %s is shorter than advert_interval %s; use about 3 intervals", c.AdvertTTL, c.AdvertInterval))
	}
	if c.ConnLow <= 0 || c.ConnHigh < c.ConnLow {
		errs = append(errs, fmt.Errorf("connection watermarks low=%d high=%d: need 0 < low <= high", c.ConnLow, c.ConnHigh))
	}
	if c.DiscoverPeers < 0 || c.DiscoverPeers > c.ConnHigh {
		errs = append(errs, fmt.Errorf("discover_peers %d: use 1 to the connection high watermark %d (default 32)", c.DiscoverPeers, c.ConnHigh))
	}
	if c.MaxMemoryMB < 16 {
		errs = append(errs, fmt.Errorf("max_memory_mb %d is too small; use at least 16", c.MaxMemoryMB))
	}
	if c.MaxFDs < 16 {
		errs = append(errs, fmt.Errorf("max_fds %d is too small; use at least 16", c.MaxFDs))
	}
	if err := c.NAT.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
