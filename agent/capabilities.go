package agent

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
)

// adhere makes this agent adhere to a framework and provides the
// framework's key on the DHT, so FindProviders finds its adherents.
func (a *Agent) adhere(id string) {
	a.fws.adhere(id)
	a.goLoop(func() { a.provideKey(a.runCtx, mesh.KeyFrameworkPrefix+id) })
}

// provideCapabilities provides this agent's capability keys: its drivers,
// the frameworks it adheres to and the GPU models its drivers offer. The
// mesh re-provides them every reprovide_interval.
func (a *Agent) provideCapabilities() {
	keys := []string{}
	for _, name := range a.order {
		keys = append(keys, mesh.KeyDriverPrefix+name)
	}
	for _, id := range a.fws.Adhered() {
		keys = append(keys, mesh.KeyFrameworkPrefix+id)
	}
	a.fpMu.Lock()
	for _, fp := range a.fp {
		if fp.Total.GPUs > 0 && fp.Total.GPUModel != "" {
			keys = append(keys, mesh.KeyGPUPrefix+strings.ToLower(fp.Total.GPUModel))
		}
	}
	a.fpMu.Unlock()
	for _, k := range keys {
		a.goLoop(func() { a.provideKey(a.runCtx, k) })
	}
}

// provideKey provides one DHT key now; a failure is logged (the mesh
// tries again within 30 s).
func (a *Agent) provideKey(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := a.node.Provide(ctx, key)
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, mesh.ErrNoDHTPeers):
		a.log.Debug("provide DHT key: no DHT peers yet (retried by the mesh)", "key", key)
	default:
		a.log.Warn("provide DHT key (retried by the mesh)", "key", key, "err", err)
	}
}

// driverFiles reports whether a driver stages inputs and collects outputs
// (its fingerprint says files and it implements drivers.Collector).
func (a *Agent) driverFiles(name string) bool {
	_, ok := a.drivers[name].(drivers.Collector)
	a.fpMu.Lock()
	defer a.fpMu.Unlock()
	return ok && a.fp[name].Files
}
