package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.yaml.in/yaml/v3"
)

// Config is an agent's configuration, as read from its YAML file (flags
// override it in cmd/pcm-agent). Zero values take DefaultConfig's.
type Config struct {
	DataDir      string   `yaml:"data_dir"`
	Listen       []string `yaml:"listen"`
	Bootstrap    []string `yaml:"bootstrap"`
	SwarmKeyFile string   `yaml:"swarm_key"`
	APIListen    string   `yaml:"api_listen"`
	APIToken     string   `yaml:"api_token"`
	// APITimeouts cut slow and idle HTTP clients.
	APITimeouts    APITimeouts       `yaml:"api_timeouts"`
	Region         string            `yaml:"region"`
	Zone           string            `yaml:"zone"`
	Labels         map[string]string `yaml:"labels"`
	AdvertInterval time.Duration     `yaml:"advert_interval"`
	// DiscoverPeers is how many connections the agent seeks by dialling
	// the authors of adverts (default 32); negotiation and the ledger
	// dial whom they need besides. Fewer keep gossip and memory down in
	// large meshes; more save the first negotiation with a provider its
	// connection.
	DiscoverPeers int `yaml:"discover_peers"`
	// ReprovideInterval is how often the agent provides its DHT keys
	// again (default 12h; records live 48h).
	ReprovideInterval time.Duration `yaml:"reprovide_interval"`
	// Drivers maps a driver kind (local, sim, slurm, kubernetes, exec) to
	// its settings; default: {local: {}}.
	Drivers map[string]yaml.Node `yaml:"drivers"`
	// Prices are this provider's prices in the default framework, in
	// currency units per unit-hour by resource class (cpu, memory, gpu...).
	Prices     map[string]float64 `yaml:"prices"`
	Frameworks []string           `yaml:"frameworks"`
	Ledger     LedgerConfig       `yaml:"ledger"`
	NAT        NATConfig          `yaml:"nat"`
	// Lease is the lease this agent grants providers on attempts it
	// brokers (default 30s): a provider silent for lease × 1.5 has lost
	// its attempt, and stops it itself after one lease without renewal.
	Lease time.Duration `yaml:"lease"`
	// Results bounds the task results this agent makes and keeps.
	Results ResultsConfig `yaml:"results"`
	// MinFreeMB is the free space the agent keeps on its data dir's file
	// system: it refuses to start below it and stops cleanly when it falls
	// below it (default 64).
	MinFreeMB int    `yaml:"min_free_mb"`
	LogLevel  string `yaml:"log_level"`
	// DisableDHT is for large in-process test meshes.
	DisableDHT bool `yaml:"-"`
	// Faults inject bugs for testing the checkers (testnet/chaos.sh); never
	// set in production.
	Faults Faults `yaml:"-"`
}

// LedgerConfig configures this agent's ledger replica.
type LedgerConfig struct {
	Bootstrap    bool          `yaml:"bootstrap"`
	MaxVoters    int           `yaml:"max_voters"`
	MaxNonVoters int           `yaml:"max_non_voters"`
	VoterTimeout time.Duration `yaml:"voter_timeout"`
	// RaftMultiplier scales raft's timeouts (heartbeat and election 1.5 s,
	// leader lease 1 s) for slow or overloaded machines, as Consul's and
	// Nomad's raft_multiplier do: fewer needless elections, slower
	// failover. 1 to 10; default 1.
	RaftMultiplier int `yaml:"raft_multiplier"`
	// Admit is who may hold a copy of the ledger: "allow-list" (default:
	// the peers in Voters/NonVoters, or admitted by a voter with
	// `pcm-agent ledger admit`; everyone else is a client) or "open" (any
	// peer, up to the caps; for meshes whose members trust each other).
	Admit     string   `yaml:"admit"`
	Voters    []string `yaml:"voters"`
	NonVoters []string `yaml:"non_voters"`
}

// APITimeouts bound what a slow client can hold on the HTTP API: a
// request must arrive whole within Read (a slow body is cut there), a
// response or each chunk of a stream (log follow, the page's events) must
// be taken within Write, and a kept-alive connection closes after Idle.
type APITimeouts struct {
	Read  time.Duration `yaml:"read"`
	Write time.Duration `yaml:"write"`
	Idle  time.Duration `yaml:"idle"`
}

// orDefaults fills unset timeouts with the defaults (30s, 1m, 2m).
func (t APITimeouts) orDefaults() APITimeouts {
	if t.Read <= 0 {
		t.Read = 30 * time.Second
	}
	if t.Write <= 0 {
		t.Write = time.Minute
	}
	if t.Idle <= 0 {
		t.Idle = 2 * time.Minute
	}
	return t
}

// DefaultAPIListen is the API address PCM users know.
const DefaultAPIListen = "127.0.0.1:8999"

// DefaultConfig is an agent with the local driver and its own ledger.
func DefaultConfig() Config {
	return Config{
		Listen:         []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
		APIListen:      DefaultAPIListen,
		APITimeouts:    APITimeouts{}.orDefaults(),
		AdvertInterval: 10 * time.Second,
		Ledger:         LedgerConfig{MaxVoters: 3, MaxNonVoters: 6, VoterTimeout: 30 * time.Second},
		LogLevel:       "info",
	}
}

// LoadConfig decodes a YAML config; unknown fields are errors naming the
// line. Fields missing from the file keep DefaultConfig's values.
func LoadConfig(name string, data []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config %s: %w", name, namedFields(data, err))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// Validate checks every field and names the ones that are wrong.
func (c Config) Validate() error {
	var errs []error
	if c.APIListen != "" {
		if _, _, err := net.SplitHostPort(c.APIListen); err != nil {
			errs = append(errs, fmt.Errorf("api_listen %q: want HOST:PORT such as 127.0.0.1:8999", c.APIListen))
		} else if !isLoopback(c.APIListen) && c.APIToken == "" {
			errs = append(errs, fmt.Errorf("api_listen %q is not a loopback address: set api_token (--api-token) so the API is not open to the network", c.APIListen))
		}
	}
	for _, to := range []struct {
		name string
		d    time.Duration
	}{{"read", c.APITimeouts.Read}, {"write", c.APITimeouts.Write}, {"idle", c.APITimeouts.Idle}} {
		if to.d != 0 && to.d < 100*time.Millisecond {
			errs = append(errs, fmt.Errorf("api_timeouts.%s %s is too short; use at least 100ms, or leave it out for the default", to.name, to.d))
		}
	}
	if c.DiscoverPeers < 0 || c.DiscoverPeers > 192 {
		errs = append(errs, fmt.Errorf("discover_peers %d: use 1 to 192 connections (default 32)", c.DiscoverPeers))
	}
	if c.AdvertInterval != 0 && c.AdvertInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("advert_interval %s is too short; use at least 10ms (default 10s)", c.AdvertInterval))
	}
	for k := range c.Drivers {
		switch k {
		case "local", "sim", "slurm", "kubernetes", "exec":
		default:
			errs = append(errs, fmt.Errorf("drivers.%s: unknown driver; known: local, sim, slurm, kubernetes, exec", k))
		}
	}
	for k, v := range c.Prices {
		if v < 0 {
			errs = append(errs, fmt.Errorf("prices.%s is %v; prices cannot be negative", k, v))
		}
	}
	if c.Ledger.RaftMultiplier < 0 || c.Ledger.RaftMultiplier > 10 {
		errs = append(errs, fmt.Errorf("ledger.raft_multiplier %d: use 1 to 10 (default 1)", c.Ledger.RaftMultiplier))
	}
	if c.Lease != 0 && c.Lease < 2*time.Second {
		errs = append(errs, fmt.Errorf("lease %s is too short; use at least 2s (default 30s): providers renew every lease/4", c.Lease))
	}
	switch c.Ledger.Admit {
	case "", "allow-list", "open":
	default:
		errs = append(errs, fmt.Errorf("ledger.admit %q: use allow-list (default) or open", c.Ledger.Admit))
	}
	for _, id := range append(append([]string{}, c.Ledger.Voters...), c.Ledger.NonVoters...) {
		if _, err := peer.Decode(id); err != nil {
			errs = append(errs, fmt.Errorf("ledger.voters/non_voters: %q is not a peer id (pcm-agent id prints one): %w", id, err))
		}
	}
	if c.Ledger.MaxVoters < 0 || c.Ledger.MaxVoters%2 == 0 && c.Ledger.MaxVoters != 0 {
		errs = append(errs, fmt.Errorf("ledger.max_voters %d: use an odd number (1, 3, 5)", c.Ledger.MaxVoters))
	}
	if err := c.Results.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.NAT.mesh().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// isLoopback reports whether a HOST:PORT binds only to loopback.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Faults are deliberate bugs that prove the chaos checker can fail.
type Faults struct {
	// DropFinalEvents makes providers "forget" to record how tasks ended
	// while reporting success to nobody: tasks never reach a final state.
	DropFinalEvents bool
}
