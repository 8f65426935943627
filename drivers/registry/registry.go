package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/exec"
	"github.com/pcm-mesh/pcm/drivers/kubernetes"
	"github.com/pcm-mesh/pcm/drivers/local"
	"github.com/pcm-mesh/pcm/drivers/sim"
	"github.com/pcm-mesh/pcm/drivers/slurm"
)

// Kinds lists the driver kinds Build knows, in the order they are documented.
var Kinds = []string{local.Name, sim.Name, exec.Name, "slurm", "kubernetes"}

// Build returns a driver of kind configured by raw, which may be nil (all
// defaults), a json.RawMessage or []byte of JSON, or a value decoded from
// YAML (map[string]any). Drivers are not started: New starts nothing.
func Build(kind string, raw any, stateDir string, logger *slog.Logger) (drivers.Driver, error) {
	js, err := toJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("driver %q: config: %w", kind, err)
	}
	switch kind {
	case local.Name:
		var cfg local.Config
		if err := decode(js, &cfg); err != nil {
			return nil, fmt.Errorf("driver local: config: %w", err)
		}
		if cfg.StateDir == "" {
			cfg.StateDir = stateDir
		}
		return local.New(cfg, logger)
	case sim.Name:
		var cfg sim.Config
		if err := decode(js, &cfg); err != nil {
			return nil, fmt.Errorf("driver sim: config: %w", err)
		}
		if cfg.StateDir == "" {
			cfg.StateDir = stateDir
		}
		return sim.New(cfg, logger)
	case exec.Name:
		var cfg exec.Config
		if err := decode(js, &cfg); err != nil {
			return nil, fmt.Errorf("driver exec: config: %w", err)
		}
		if cfg.StateDir == "" {
			cfg.StateDir = stateDir
		}
		return exec.New(cfg, logger)
	case "slurm":
		return slurm.FromConfig(js, stateDir, logger)
	case "kubernetes":
		return kubernetes.FromConfig(js, stateDir, logger)
	}
	return nil, fmt.Errorf("driver kind %q is unknown; known: %s", kind, strings.Join(Kinds, ", "))
}

// toJSON turns the accepted config forms into JSON bytes.
func toJSON(raw any) ([]byte, error) {
	switch v := raw.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	case string:
		return []byte(v), nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%T cannot be a driver config (%w); use a mapping", raw, err)
	}
	return b, nil
}

// decode reads js into cfg strictly; empty js leaves cfg at defaults.
func decode(js []byte, cfg any) error {
	if len(bytes.TrimSpace(js)) == 0 || string(bytes.TrimSpace(js)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("%w; see the driver's section in drivers/README.md", err)
	}
	return nil
}
