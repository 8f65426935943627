package mesh

import (
	"errors"
	"fmt"
	"time"
)

// Reachability values: what an agent knows about whether peers outside
// its network can dial it.
const (
	ReachabilityUnknown = "unknown"
	ReachabilityPublic  = "public"
	ReachabilityPrivate = "private"
)

// NATConfig configures NAT traversal (see nat.go and PROTOCOL.md).
type NATConfig struct {
	// Reachability is "auto" (default: found with AutoNAT v2 dial-backs
	// by peers), or "public" / "private" to skip the probes.
	Reachability string
	// AllowPrivateAddrs treats private (RFC 1918, CGNAT) addresses as
	// addresses the outside may dial: AutoNAT probes them, relays hand
	// them out in reservations, hole punching uses them. For meshes whose
	// "internet" is itself a private network (a campus WAN, a VPN, the
	// namespaces of testnet/nat.sh); off on the public internet, where
	// such addresses are meaningless to a remote peer.
	AllowPrivateAddrs bool
	// DisableRelayService stops a publicly reachable agent from serving
	// as a circuit relay v2 for agents behind NAT.
	DisableRelayService bool
	// Relay are the relay service's limits.
	Relay RelayLimits
	// Relays are extra relay candidates (multiaddrs with /p2p/<id>); the
	// bootstrap peers and agents whose adverts say "public" are always
	// candidates.
	Relays []string
	// NumRelays is how many relay reservations an agent that is not
	// publicly reachable keeps (default 2).
	NumRelays int
	// DisableHolePunching turns DCUtR off: relayed peers stay relayed.
	DisableHolePunching bool
	// ProbeInterval is how often reachability is re-checked once known
	// (default 1m; every 2s while unknown).
	ProbeInterval time.Duration

	// allowLoopback counts loopback addresses as dialable (tests on
	// 127.0.0.1 only).
	allowLoopback bool
}

// RelayLimits bound what a relay spends on others. A zero field takes the
// default; the duration and data limits are off by default (see nat.go for
// why and what it costs).
type RelayLimits struct {
	// MaxReservations is the number of agents that may hold a
	// reservation at once (default 128).
	MaxReservations int
	// MaxCircuits is the number of relayed connections per agent
	// (default 16).
	MaxCircuits int
	// Duration cuts a relayed connection after this long; 0 = never.
	Duration time.Duration
	// DataBytes cuts a relayed connection after this many bytes in
	// either direction; 0 = never.
	DataBytes int64
}

// Defaults for NATConfig.
const (
	DefaultNumRelays       = 2
	DefaultProbeInterval   = time.Minute
	DefaultMaxReservations = 128
	DefaultMaxCircuits     = 16
)

func (c NATConfig) withDefaults() NATConfig {
	if c.Reachability == "" {
		c.Reachability = "auto"
	}
	if c.NumRelays == 0 {
		c.NumRelays = DefaultNumRelays
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.Relay.MaxReservations == 0 {
		c.Relay.MaxReservations = DefaultMaxReservations
	}
	if c.Relay.MaxCircuits == 0 {
		c.Relay.MaxCircuits = DefaultMaxCircuits
	}
	return c
}

// Validate checks the NAT settings and names the bad field.
func (c NATConfig) Validate() error {
	var errs []error
	switch c.Reachability {
	case "", "auto", ReachabilityPublic, ReachabilityPrivate:
	default:
		errs = append(errs, fmt.Errorf("nat.reachability %q: use auto, public or private", c.Reachability))
	}
	for i, a := range c.Relays {
		if _, err := ParseAddrInfo(a); err != nil {
			errs = append(errs, fmt.Errorf("nat.relays[%d]: %w", i, err))
		}
	}
	if c.NumRelays < 0 || c.NumRelays > 16 {
		errs = append(errs, fmt.Errorf("nat.num_relays %d: use 0 to 16 (default %d)", c.NumRelays, DefaultNumRelays))
	}
	if c.ProbeInterval != 0 && c.ProbeInterval < time.Second {
		errs = append(errs, fmt.Errorf("nat.probe_interval %s: use at least 1s (default %s)", c.ProbeInterval, DefaultProbeInterval))
	}
	if c.Relay.MaxReservations < 0 || c.Relay.MaxCircuits < 0 || c.Relay.Duration < 0 || c.Relay.DataBytes < 0 {
		errs = append(errs, errors.New("nat.relay limits cannot be negative (0 takes the default)"))
	}
	return errors.Join(errs...)
}
