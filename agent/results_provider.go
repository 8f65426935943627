package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pcm-mesh/pcm/agent/results"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/rules"
)

// prepareFiles completes a task's driver spec on this provider: the
// outputs to collect, under the smallest of the task's, the framework's
// and this provider's limits, and the inputs, fetched over the mesh into
// the results store before the task starts.
func (a *Agent) prepareFiles(ctx context.Context, ag consensus.Agreement, task *rules.Task, spec *drivers.TaskSpec) error {
	cfg := a.cfg.Results.orDefaults()
	if task.Outputs != nil {
		limit := cfg.MaxOutputBytes
		if fw, err := a.fws.Resolve(ag.Framework); err == nil {
			if l := fw.OutputLimit(task); l > 0 && l < limit {
				limit = l
			}
		}
		spec.Outputs = &drivers.Outputs{Paths: task.Outputs.Paths, MaxBytes: limit}
	}
	for i, in := range task.Inputs {
		m, err := a.fetchInput(ctx, ag, task, in.Digest)
		if err != nil {
			return fmt.Errorf("inputs[%d] %s: %w", i, in.Digest, err)
		}
		spec.Inputs = append(spec.Inputs, drivers.Input{Archive: a.res.store.Path(m.Digest), Dir: in.Dir})
	}
	return nil
}

// fetchInput fetches another task's results for the attempt ag, from
// the DHT's holders of the digest and the task's broker and submitter,
// asking again for a while (a fresh digest may not be provided yet).
func (a *Agent) fetchInput(ctx context.Context, ag consensus.Agreement, task *rules.Task, digest string) (results.Meta, error) {
	cfg := a.cfg.Results.orDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.FetchTimeout)
	defer cancel()
	w := results.Want{Digest: digest, MaxSize: cfg.MaxOutputBytes, For: &results.Delegation{AgreementID: ag.ID, Document: task.Canonical()}}
	var last error
	for wait := time.Second; ; wait = min(2*wait, 15*time.Second) {
		m, err := a.heldInput(ctx, w)
		if errors.Is(err, results.ErrNotFound) {
			m, err = a.fetchResults(ctx, w, nil, ag.Broker, ag.Submitter)
		}
		if err == nil {
			a.keepResults(m)
			return m, nil
		}
		if errors.Is(err, results.ErrRefused) || errors.Is(err, errForbidden) {
			return results.Meta{}, err // the same rules everywhere: asking again will not help
		}
		last = err
		select {
		case <-ctx.Done():
			return results.Meta{}, fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(wait):
		}
	}
}

// heldInput returns this agent's own copy of an input, if the task may
// have it: a copy kept from an earlier fetch goes only to tasks a holder
// would send it to (the same check, with this agent as the requester).
// ErrNotFound when no copy is held.
func (a *Agent) heldInput(ctx context.Context, w results.Want) (results.Meta, error) {
	m, held := a.res.store.Get(w.Digest)
	if !held {
		return results.Meta{}, results.ErrNotFound
	}
	if err := a.authorizeResults(ctx, a.ID(), m, results.Request{V: results.Version, Digest: w.Digest, For: w.For}); err != nil {
		return results.Meta{}, err
	}
	return m, nil
}

// collectResults packs the outputs of an attempt that ended kind into
// the results store; nil when the task declared none or the driver
// cannot collect (a driver without drivers.Collector never bids for a
// task with outputs). An error (outputs over the limit) fails the attempt.
func (a *Agent) collectResults(ctx context.Context, d drivers.Driver, specID string, ag consensus.Agreement, kind string) (*consensus.ResultsRef, error) {
	col, ok := d.(drivers.Collector)
	if !ok || kind != consensus.EventSucceeded && kind != consensus.EventFailed {
		return nil, nil
	}
	m, err := a.res.store.Collect(func(w io.Writer) (int64, error) {
		return col.CollectOutputs(ctx, specID, w)
	}, results.Meta{TaskID: ag.TaskID, AgreementID: ag.ID})
	if errors.Is(err, drivers.ErrNoOutputs) {
		return nil, nil
	}
	if err != nil {
		a.log.Warn("collect outputs", "agreement", ag.ID, "err", err)
		return nil, err
	}
	a.keepResults(m)
	a.log.Info("results collected", "task", ag.TaskID, "digest", m.Digest, "size", m.Size)
	return &consensus.ResultsRef{Digest: m.Digest, Size: m.Size}, nil
}
