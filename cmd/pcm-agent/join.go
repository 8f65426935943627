package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
)

func joinCommand() *cli.Command {
	return &cli.Command{
		Name:  "join",
		Usage: "run an agent: join the mesh, advertise resources, serve the API",
		Description: `Starts an agent with the local driver and its own ledger unless told
otherwise. Settings come from --config (YAML); flags override the file.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config file"},
			&cli.StringSliceFlag{Name: "listen", Usage: "listen address: PORT, IP:PORT or a multiaddr (repeatable; PORT and IP:PORT listen on TCP and QUIC; 0 picks a free port); the address must be free", DefaultText: "4001"},
			&cli.StringSliceFlag{Name: "bootstrap", Aliases: []string{"b"}, Usage: "multiaddr of a peer to join through, ending in /p2p/<peer id> (repeatable)"},
			&cli.StringFlag{Name: "swarm-key", Usage: "private network key file (PSK); only agents with the same key can connect (TCP only)"},
			&cli.StringFlag{Name: "api-listen", Usage: "HTTP API address", DefaultText: "127.0.0.1:8999"},
			&cli.StringFlag{Name: "api-token", EnvVars: []string{"PCM_API_TOKEN"}, Usage: "require this bearer token on the API (needed to bind a non-loopback address)"},
			&cli.StringFlag{Name: "region", Usage: "provider attribute region"},
			&cli.StringFlag{Name: "zone", Usage: "provider attribute zone"},
			&cli.StringSliceFlag{Name: "label", Usage: "provider attribute KEY=VALUE (repeatable)"},
			&cli.StringSliceFlag{Name: "driver", Usage: "enable a driver: local, sim, slurm, kubernetes, exec (repeatable; only these run; each takes its settings from the config file's drivers section, or its defaults; exec needs its plugin command in drivers.exec)", DefaultText: "local"},
			&cli.DurationFlag{Name: "advert-interval", Usage: "how often to republish the advert", DefaultText: "10s"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", DefaultText: "info"},
			&cli.StringSliceFlag{Name: "framework", Usage: "adhere to a framework: a published id, or a file that is published first (repeatable)"},
			&cli.StringSliceFlag{Name: "price", Usage: "price CLASS=AMOUNT in currency units per unit-hour, e.g. cpu=0.05 (repeatable)"},
			&cli.BoolFlag{Name: "bootstrap-ledger", Usage: "start a new ledger even though --bootstrap peers are given"},
			&cli.IntFlag{Name: "max-voters", Usage: "ledger voters at most", DefaultText: "3"},
			&cli.DurationFlag{Name: "lease", Usage: "lease granted to providers on the attempts this agent brokers: a provider silent for 1.5 leases has lost its attempt ", DefaultText: "30s"},
			&cli.StringFlag{Name: "ledger-admit", Usage: "who may hold a copy of the ledger: allow-list (default: --ledger-voter/--ledger-non-voter peers and those a voter admits with 'ledger admit'; others are clients) or open (any peer, for meshes that trust each other)"},
			&cli.StringSliceFlag{Name: "ledger-voter", Usage: "peer id allowed to become a ledger voter (repeatable; used while this agent leads)"},
			&cli.StringSliceFlag{Name: "ledger-non-voter", Usage: "peer id allowed to become a ledger non-voter (repeatable)"},
			&cli.StringFlag{Name: "reachability", Value: "auto", Usage: "auto (AutoNAT v2 probes), public or private"},
			&cli.BoolFlag{Name: "nat-private-addrs", Usage: "treat private addresses (10/8, 172.16/12, 192.168/16, 100.64/10) as reachable from outside for AutoNAT, relays and hole punching (a private WAN or a test network)"},
			&cli.BoolFlag{Name: "no-relay-service", Usage: "do not serve as a relay for agents behind NAT when publicly reachable"},
			&cli.StringSliceFlag{Name: "relay", Usage: "multiaddr of a relay to reserve on when behind NAT, ending in /p2p/<peer id> (repeatable; bootstrap peers and public agents are tried too)"},
			&cli.StringFlag{Name: "debug-pprof", EnvVars: []string{"PCM_DEBUG_PPROF"}, Usage: "serve Go runtime profiles (/debug/pprof/: CPU, goroutine, block, mutex, heap, trace) on this loopback IP:PORT, and turn block and mutex profiling on; off by default"},
		},
		Action: runJoin,
	}
}

func runJoin(c *cli.Context) error {
	cfg, err := joinConfig(c)
	if err != nil {
		return withCode(exitUsage, err)
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		return withCode(exitUsage, err)
	}
	id, err := mesh.LoadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return err
	}
	if addr := c.String("debug-pprof"); addr != "" {
		_, stopPprof, err := startPprof(addr, log)
		if err != nil {
			return withCode(exitUsage, err)
		}
		defer stopPprof()
	}
	ds, err := buildDrivers(cfg, log)
	if err != nil {
		return withCode(exitUsage, err)
	}
	a, err := agent.New(cfg, agent.Deps{Identity: id, Drivers: ds, Logger: log, Version: version})
	if err != nil {
		return withCode(exitUsage, err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "pcm agent %s running\n  api:   %s\n", a.ID(), a.APIURL())
	for _, addr := range a.Node().Addrs() {
		fmt.Fprintf(c.App.ErrWriter, "  addr:  %s\n", addr)
	}
	fmt.Fprintln(c.App.ErrWriter, "press Ctrl-C to stop")
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-a.Done():
		log.Error("shutting down", "reason", a.Err())
		cerr := a.Close()
		return errors.Join(a.Err(), cerr)
	}
	return a.Close()
}

// joinConfig merges defaults, the config file and flags (flags win).
func joinConfig(c *cli.Context) (agent.Config, error) {
	cfg := agent.DefaultConfig()
	if path := c.String("config"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("--config: %w", err)
		}
		if cfg, err = agent.LoadConfig(path, data); err != nil {
			return cfg, err
		}
	}
	if c.IsSet("data-dir") || os.Getenv("PCM_DATA_DIR") != "" || cfg.DataDir == "" {
		cfg.DataDir = c.String("data-dir")
	}
	if c.IsSet("listen") {
		cfg.Listen = nil
		for _, l := range c.StringSlice("listen") {
			addrs, err := parseListen(l)
			if err != nil {
				return cfg, err
			}
			cfg.Listen = append(cfg.Listen, addrs...)
		}
	}
	if c.IsSet("bootstrap") {
		cfg.Bootstrap = c.StringSlice("bootstrap")
	}
	setString(c, "swarm-key", &cfg.SwarmKeyFile)
	setString(c, "api-listen", &cfg.APIListen)
	setString(c, "api-token", &cfg.APIToken)
	setString(c, "region", &cfg.Region)
	setString(c, "zone", &cfg.Zone)
	setString(c, "log-level", &cfg.LogLevel)
	if c.IsSet("advert-interval") {
		cfg.AdvertInterval = c.Duration("advert-interval")
	}
	for _, l := range c.StringSlice("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return cfg, fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[k] = v
	}
	if c.IsSet("framework") {
		cfg.Frameworks = c.StringSlice("framework")
	}
	for _, p := range c.StringSlice("price") {
		k, v, ok := strings.Cut(p, "=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			return cfg, fmt.Errorf("--price %q: want CLASS=AMOUNT such as cpu=0.05", p)
		}
		if cfg.Prices == nil {
			cfg.Prices = map[string]float64{}
		}
		cfg.Prices[k] = f
	}
	if c.IsSet("bootstrap-ledger") {
		cfg.Ledger.Bootstrap = c.Bool("bootstrap-ledger")
	}
	if c.IsSet("max-voters") {
		cfg.Ledger.MaxVoters = c.Int("max-voters")
	}
	setString(c, "ledger-admit", &cfg.Ledger.Admit)
	if c.IsSet("lease") {
		cfg.Lease = c.Duration("lease")
	}
	if c.IsSet("ledger-voter") {
		cfg.Ledger.Voters = c.StringSlice("ledger-voter")
	}
	if c.IsSet("ledger-non-voter") {
		cfg.Ledger.NonVoters = c.StringSlice("ledger-non-voter")
	}
	if c.IsSet("driver") {
		// --driver chooses which drivers run; a driver the config file
		// configures keeps its settings (drivers.sim.time_scale, ...).
		fromFile := cfg.Drivers
		cfg.Drivers = map[string]yaml.Node{}
		for _, d := range c.StringSlice("driver") {
			cfg.Drivers[d] = fromFile[d]
		}
	}
	// PCM_FAULT_DROP_FINAL_EVENTS=1 injects a bug for testnet/chaos.sh to catch.
	cfg.Faults.DropFinalEvents = os.Getenv("PCM_FAULT_DROP_FINAL_EVENTS") == "1"
	setString(c, "reachability", &cfg.NAT.Reachability)
	if c.IsSet("nat-private-addrs") {
		cfg.NAT.AllowPrivateAddrs = c.Bool("nat-private-addrs")
	}
	if c.IsSet("no-relay-service") {
		cfg.NAT.DisableRelayService = c.Bool("no-relay-service")
	}
	if c.IsSet("relay") {
		cfg.NAT.Relays = c.StringSlice("relay")
	}
	if len(cfg.Drivers) == 0 {
		cfg.Drivers = map[string]yaml.Node{"local": {}}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func setString(c *cli.Context, flag string, dst *string) {
	if c.IsSet(flag) {
		*dst = c.String(flag)
	}
}

// parseListen accepts PORT, IP:PORT or a multiaddr; the first two listen
// on TCP and QUIC.
func parseListen(s string) ([]string, error) {
	if strings.HasPrefix(s, "/") {
		return []string{s}, nil
	}
	host, port := "0.0.0.0", s
	if strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("--listen %q: want PORT, IP:PORT or a multiaddr", s)
		}
		host, port = h, p
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return nil, fmt.Errorf("--listen %q: port must be 0-65535", s)
	}
	return mesh.ListenAddrs(host, n), nil
}

// driverJSON turns a driver's YAML settings into the JSON the driver
// packages decode.
func driverJSON(kind string, n yaml.Node) ([]byte, error) {
	if n.Kind == 0 {
		return []byte("{}"), nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("drivers.%s: %w", kind, err)
	}
	if v == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(v)
}

func driverStateDir(cfg agent.Config, kind string) string {
	return filepath.Join(cfg.DataDir, "drivers", kind)
}
