package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/pcm-mesh/pcm/agent/results"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/rules"
)

// authorizeResults decides a /pcm/results/1.0.0 request from peer by for
// archive m: the attempt it names (or the one m was stored for) must have
// a final ledger event that names the digest, and by must be entitled to
// that task's results, or fetch them as an input of a task it runs whose
// submitter is entitled (req.For).
func (a *Agent) authorizeResults(ctx context.Context, by string, m results.Meta, req results.Request) error {
	agID := orDefault(req.AgreementID, m.AgreementID)
	ag, err := a.agreement(ctx, agID)
	if errors.Is(err, consensus.ErrNotFound) && agID != "" {
		return fmt.Errorf("%w: %w", results.ErrNotYet, err)
	}
	if err != nil {
		return fmt.Errorf("results %s: %w", req.Digest, err)
	}
	ev, ok := a.finalEvent(ctx, ag)
	if !ok {
		return fmt.Errorf("%w: attempt %s has no final event here yet", results.ErrNotYet, agID)
	}
	if ev.Results == nil || ev.Results.Digest != req.Digest {
		a.metrics.refused("results_binding")
		return fmt.Errorf("%w: attempt %s's final ledger event does not name results %s", errForbidden, agID, req.Digest)
	}
	if req.For == nil {
		return a.authorizeTask(ag, "", opResults, by)
	}
	return a.authorizeInput(ctx, by, req)
}

// authorizeInput checks a delegation: by runs the attempt req.For names,
// whose task document lists the digest as an input, and that task's
// submitter may read the results themselves.
func (a *Agent) authorizeInput(ctx context.Context, by string, req results.Request) error {
	refuse := func(format string, args ...any) error {
		a.metrics.refused("results_input")
		a.log.Info("results input fetch refused", "by", by, "digest", req.Digest, "why", fmt.Sprintf(format, args...))
		return fmt.Errorf("%w: input fetch of %s: "+format, append([]any{errForbidden, req.Digest}, args...)...)
	}
	user, err := a.agreement(ctx, req.For.AgreementID)
	if errors.Is(err, consensus.ErrNotFound) {
		return fmt.Errorf("%w: %w", results.ErrNotYet, err) // committed, but not applied here yet
	}
	if err != nil {
		return refuse("%v", err)
	}
	if user.Provider != by {
		return refuse("agreement %s's provider is %s, not %s", user.ID, user.Provider, by)
	}
	task, err := rules.ParseTask("for.document", req.For.Document)
	if err != nil || task.Hash() != user.TaskHash {
		return refuse("for.document is not the task of agreement %s (its hash differs)", user.ID)
	}
	if !slices.ContainsFunc(task.Inputs, func(in rules.TaskInput) bool { return in.Digest == req.Digest }) {
		return refuse("task %s does not name it among its inputs", user.TaskID)
	}
	ag, err := a.agreement(ctx, orDefault(req.AgreementID, a.heldAgreement(req.Digest)))
	if err != nil {
		return refuse("%v", err)
	}
	// The submitter, not the broker: else anyone could launder results
	// out through a broker that may read them.
	submitter := orDefault(user.Submitter, user.Broker)
	if a.entitled(ag, "", opResults, submitter) {
		return nil
	}
	return refuse("task %s's submitter %s may not read the results of task %s", user.TaskID, submitter, ag.TaskID)
}

// heldAgreement is the attempt this agent stored an archive for.
func (a *Agent) heldAgreement(digest string) string {
	m, _ := a.res.store.Get(digest)
	return m.AgreementID
}
