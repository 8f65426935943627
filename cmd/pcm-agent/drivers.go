package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/local"
)

// buildDrivers builds the configured drivers, local first.
func buildDrivers(cfg agent.Config, log *slog.Logger) ([]drivers.Driver, error) {
	kinds := make([]string, 0, len(cfg.Drivers))
	for k := range cfg.Drivers {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] == "local" || kinds[i] < kinds[j] && kinds[j] != "local" })
	var out []drivers.Driver
	for _, kind := range kinds {
		raw, err := driverJSON(kind, cfg.Drivers[kind])
		if err != nil {
			return nil, err
		}
		d, err := buildDriver(kind, raw, driverStateDir(cfg, kind), log.With("driver", kind))
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func buildDriver(kind string, raw []byte, stateDir string, log *slog.Logger) (drivers.Driver, error) {
	switch kind {
	case "local":
		var c local.Config
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("drivers.local: %w", err)
		}
		c.StateDir = stateDir
		return local.New(c, log)
	}
	return nil, fmt.Errorf("drivers.%s: not built into this agent", kind)
}
