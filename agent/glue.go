package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/rules"
)

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

// pickDriver chooses the enabled driver for a task's driver kind.
func (a *Agent) pickDriver(t *rules.Task) string {
	if t.Driver != "" && t.Driver != "any" {
		if _, ok := a.drivers[t.Driver]; ok {
			return t.Driver
		}
		return ""
	}
	return a.order[0]
}

// taskSpec turns a task document into a driver spec.
func taskSpec(id string, t *rules.Task) drivers.TaskSpec {
	r := drivers.Resources{CPUs: t.Resources[ClassCPU], MemoryMB: int64(t.Resources[ClassMemory]), DiskMB: int64(t.Resources[ClassStorage])}
	for k, v := range t.Resources {
		if k == ClassGPU {
			r.GPUs = int(v)
		} else if len(k) > 4 && k[:4] == "gpu:" {
			r.GPUs, r.GPUModel = int(v), k[4:]
		}
	}
	return drivers.TaskSpec{ID: id, Resources: r, Command: t.Command, Script: t.Script, Image: t.Image, Env: t.Env}
}

// proposeRetry proposes e until the ledger takes it or ctx ends; retrying
// with the same entry id is safe because the ledger is idempotent.
func (a *Agent) proposeRetry(ctx context.Context, e consensus.Entry) (consensus.Receipt, error) {
	backoff := 50 * time.Millisecond
	for {
		rc, err := a.ledger.Propose(ctx, e)
		if err == nil {
			return rc, nil
		}
		if !retryable(err) {
			return rc, err
		}
		a.log.Debug("propose retry", "id", e.ID, "err", err)
		select {
		case <-ctx.Done():
			return rc, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// retryable reports whether a proposal may succeed if sent again.
func retryable(err error) bool {
	for _, e := range []error{consensus.ErrBadSignature, consensus.ErrUnknownType, consensus.ErrTooLarge, consensus.ErrInvalid, consensus.ErrRejected, consensus.ErrClosed} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// ledgerHas waits until this agent's view of the ledger holds the
// agreement id at index (a client asks a replica).
func (a *Agent) ledgerHas(ctx context.Context, agreementID string, index uint64) error {
	if a.ledger.Role() == consensus.RoleClient {
		recs, err := a.ledger.Entries(ctx, consensus.Filter{From: index, Limit: 1})
		if err != nil {
			return err
		}
		if len(recs) == 0 || recs[0].ID != agreementID || recs[0].Type != consensus.TypeAgreement {
			return fmt.Errorf("ledger index %d does not hold agreement %s", index, agreementID)
		}
		return nil
	}
	if err := a.ledger.WaitApplied(ctx, index); err != nil {
		return err
	}
	rec, err := a.ledger.Entry(ctx, agreementID)
	if err != nil {
		return err
	}
	if rec.Type != consensus.TypeAgreement {
		return fmt.Errorf("ledger entry %s is a %s, not an agreement", agreementID, rec.Type)
	}
	return nil
}

// latestAgreement is the task's latest agreement, read through a replica
// when this agent holds no ledger copy.
func (a *Agent) latestAgreement(ctx context.Context, taskID string) (consensus.Agreement, bool) {
	if a.ledger.Role() != consensus.RoleClient {
		return a.ledger.LatestAgreement(taskID)
	}
	recs, err := a.ledger.Entries(ctx, consensus.Filter{Type: consensus.TypeAgreement, Task: taskID})
	if err != nil || len(recs) == 0 {
		return consensus.Agreement{}, false
	}
	var best consensus.Agreement
	for _, r := range recs {
		var ag consensus.Agreement
		if json.Unmarshal(r.Payload, &ag) == nil && ag.Attempt >= best.Attempt {
			best = ag
		}
	}
	return best, best.ID != ""
}
