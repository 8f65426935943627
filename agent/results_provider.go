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
		if fw, err := a.fws.resolve(ag.Framework); err == nil {
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
		m, err := a.fetchResults(ctx, w, nil, ag.Broker, ag.Submitter)
		if err == nil {
			a.keepResults(m)
			return m, nil
		}
		if errors.Is(err, results.ErrRefused) {
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

// collectResults packs the outputs of an attempt that ended kind into
// the results store; nil when the task declared none or the driver
// cannot collect (a driver without drivers.Collector never bids for a
// task with outputs). An error (outputs over the limit) fails the attempt.
func (a *Agent) collectResults(ctx context.Context, at *attempt, kind string) (*consensus.ResultsRef, error) {
	col, ok := at.driver.(drivers.Collector)
	if !ok || kind != consensus.EventSucceeded && kind != consensus.EventFailed {
		return nil, nil
	}
	m, err := a.res.store.Collect(func(w io.Writer) (int64, error) {
		return col.CollectOutputs(ctx, at.specID, w)
	}, results.Meta{TaskID: at.ag.TaskID, AgreementID: at.ag.ID})
	if errors.Is(err, drivers.ErrNoOutputs) {
		return nil, nil
	}
	if err != nil {
		a.log.Warn("collect outputs", "agreement", at.ag.ID, "err", err)
		return nil, err
	}
	a.keepResults(m)
	a.log.Info("results collected", "task", at.ag.TaskID, "digest", m.Digest, "size", m.Size)
	return &consensus.ResultsRef{Digest: m.Digest, Size: m.Size}, nil
}
