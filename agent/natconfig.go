package agent

import (
	"time"

	"github.com/pcm-mesh/pcm/mesh"
)

// NATConfig is the `nat:` section of the agent's configuration: how the
// agent finds out whether it is reachable, serves as a relay, holds relay
// reservations and punches holes (mesh.NATConfig documents each field).
type NATConfig struct {
	Reachability        string        `yaml:"reachability"`
	AllowPrivateAddrs   bool          `yaml:"allow_private_addrs"`
	DisableRelayService bool          `yaml:"disable_relay_service"`
	Relays              []string      `yaml:"relays"`
	NumRelays           int           `yaml:"num_relays"`
	DisableHolePunching bool          `yaml:"disable_hole_punching"`
	ProbeInterval       time.Duration `yaml:"probe_interval"`
	// RelayLimits bound the relay service (0 = default; duration and
	// bytes unlimited by default).
	RelayMaxReservations int           `yaml:"relay_max_reservations"`
	RelayMaxCircuits     int           `yaml:"relay_max_circuits"`
	RelayLimitDuration   time.Duration `yaml:"relay_limit_duration"`
	RelayLimitBytes      int64         `yaml:"relay_limit_bytes"`
}

func (c NATConfig) mesh() mesh.NATConfig {
	return mesh.NATConfig{
		Reachability:        c.Reachability,
		AllowPrivateAddrs:   c.AllowPrivateAddrs,
		DisableRelayService: c.DisableRelayService,
		Relays:              c.Relays,
		NumRelays:           c.NumRelays,
		DisableHolePunching: c.DisableHolePunching,
		ProbeInterval:       c.ProbeInterval,
		Relay: mesh.RelayLimits{
			MaxReservations: c.RelayMaxReservations,
			MaxCircuits:     c.RelayMaxCircuits,
			Duration:        c.RelayLimitDuration,
			DataBytes:       c.RelayLimitBytes,
		},
	}
}
