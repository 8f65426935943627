package main

import (
	"log/slog"
	"sort"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/registry"
)

// buildDrivers builds the configured drivers, local first (the default
// for tasks that name none).
func buildDrivers(cfg agent.Config, log *slog.Logger) ([]drivers.Driver, error) {
	kinds := make([]string, 0, len(cfg.Drivers))
	for k := range cfg.Drivers {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if (kinds[i] == "local") != (kinds[j] == "local") {
			return kinds[i] == "local"
		}
		return kinds[i] < kinds[j]
	})
	var out []drivers.Driver
	for _, kind := range kinds {
		raw, err := driverJSON(kind, cfg.Drivers[kind])
		if err != nil {
			return nil, err
		}
		d, err := registry.Build(kind, raw, driverStateDir(cfg, kind), log.With("driver", kind))
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
