package agent

import (
	"context"
	"fmt"
	"maps"
	"math"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// Resource classes in adverts and rules (package drivers defines them).
const (
	ClassCPU     = drivers.ClassCPU
	ClassMemory  = drivers.ClassMemory
	ClassStorage = drivers.ClassStorage
	ClassGPU     = drivers.ClassGPU
)

// refreshFingerprints asks every driver for its capacity; a changed
// fingerprint republishes the advert at once.
func (a *Agent) refreshFingerprints(ctx context.Context) error {
	fps := make(map[string]drivers.Fingerprint, len(a.order))
	for _, name := range a.order {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		fp, err := a.drivers[name].Fingerprint(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("fingerprint driver %s: %w", name, err)
		}
		fps[name] = fp
	}
	a.fpMu.Lock()
	changed := !equalFingerprints(a.fp, fps)
	a.fp = fps
	a.fpMu.Unlock()
	if changed {
		a.republishIfMoved()
	}
	return nil
}

// republishIfMoved republishes the advert when free capacity moved far
// from what the last advert said: by an eighth of the total of any
// resource class, or to or from zero. Every advert reaches every agent,
// and bids, not adverts, are the authority on capacity, so the small
// changes of each task start and end wait for the next interval.
func (a *Agent) republishIfMoved() {
	if a.node == nil {
		return
	}
	now := a.capacityAdvert()
	a.fpMu.Lock()
	last := a.advertisedFree
	a.fpMu.Unlock()
	if movedFar(last, now.Free, now.Total) {
		a.node.Republish()
	}
}

func movedFar(last, free, total map[string]float64) bool {
	if last == nil {
		return true
	}
	for k, t := range total {
		was, is := last[k], free[k]
		if (was <= 0) != (is <= 0) || math.Abs(is-was) >= t/8 {
			return true
		}
	}
	return false
}

func equalFingerprints(x, y map[string]drivers.Fingerprint) bool {
	if len(x) != len(y) {
		return false
	}
	for k, a := range x {
		b, ok := y[k]
		if !ok || a.Total != b.Total || a.Free != b.Free || !maps.Equal(a.Attributes, b.Attributes) {
			return false
		}
	}
	return true
}

func (a *Agent) fingerprintLoop(ctx context.Context) {
	every := min(max(a.cfg.AdvertInterval/2, 50*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.fpRefresh.Do(); err != nil && ctx.Err() == nil {
				a.log.Warn("fingerprint", "err", err)
			}
		}
	}
}

func addClasses(dst, src map[string]float64) {
	for k, v := range src {
		dst[k] += v
	}
}

// advert describes this provider: capacity from its drivers'
// fingerprints, the frameworks it adheres to with its prices, its load.
func (a *Agent) advert() mesh.Advert {
	ad := a.capacityAdvert()
	a.fpMu.Lock()
	a.advertisedFree = ad.Free
	a.fpMu.Unlock()
	if a.fws != nil {
		ad.Frameworks = a.fws.Adhered()
		ad.Prices = map[string]map[string]int64{}
		for _, id := range ad.Frameworks {
			if fw, err := a.fws.Resolve(id); err == nil {
				if p := a.pricesFor(fw); len(p) > 0 {
					ad.Prices[id] = p
				}
			}
		}
		ad.Running = a.provider.Running()
	}
	if a.ledger != nil {
		ad.Roles = []string{string(a.ledger.Role())}
	}
	return ad
}

// capacityAdvert is the advert's capacity part (takes no provider lock).
func (a *Agent) capacityAdvert() mesh.Advert {
	a.fpMu.Lock()
	fps := a.fp
	a.fpMu.Unlock()
	ad := mesh.Advert{Total: map[string]float64{}, Free: map[string]float64{}, Attrs: a.attrs()}
	for _, name := range a.driverNames() {
		fp := fps[name]
		d := mesh.DriverInfo{Name: name, Kinds: fp.Kinds, Total: fp.Total.Classes(), Free: fp.Free.Classes(), Attrs: fp.Attributes}
		ad.Drivers = append(ad.Drivers, d)
		addClasses(ad.Total, d.Total)
		addClasses(ad.Free, d.Free)
	}
	return ad
}

// attrs are the configured provider attributes.
func (a *Agent) attrs() map[string]string {
	m := map[string]string{}
	for k, v := range a.cfg.Labels {
		m[k] = v
	}
	if a.cfg.Region != "" {
		m["region"] = a.cfg.Region
	}
	if a.cfg.Zone != "" {
		m["zone"] = a.cfg.Zone
	}
	return m
}

// pricesFor are this provider's prices (micros per unit-hour by class) in
// a framework: its configured prices, with a framework's fixed prices
// winning and its ranges clamping the rest.
func (a *Agent) pricesFor(fw *rules.Framework) map[string]int64 {
	out := map[string]int64{}
	for k, v := range a.cfg.Prices {
		out[k] = int64(v * 1e6)
	}
	for class, pr := range fw.Pricing.Prices {
		switch {
		case pr.Fixed > 0:
			out[class] = int64(pr.Fixed)
		case out[class] < int64(pr.Min):
			out[class] = int64(pr.Min)
		case pr.Max > 0 && out[class] > int64(pr.Max):
			out[class] = int64(pr.Max)
		}
	}
	return out
}
