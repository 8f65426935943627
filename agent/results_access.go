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
	if agID == "" && m.Owner != "" {
		return a.authorizeUpload(ctx, by, m, req)
	}
	if agID == "" {
		a.metrics.refused("results_binding")
		return fmt.Errorf("%w: no attempt is known to have made %s here; ask a holder that has its task", errForbidden, req.Digest)
	}
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
	return a.authorizeInput(ctx, by, req, func(submitter string) error {
		if a.entitled(ag, "", opResults, submitter) {
			return nil
		}
		return fmt.Errorf("task %s's submitter %s may not read the results of task %s", taskOfAgreement(req.For.AgreementID), submitter, ag.TaskID)
	})
}

// authorizeUpload decides a request for an archive its owner uploaded
// (pcm-agent results put): only as an input of a task the owner submitted.
func (a *Agent) authorizeUpload(ctx context.Context, by string, m results.Meta, req results.Request) error {
	if req.For == nil {
		a.metrics.refused("task_results")
		return fmt.Errorf("%w: %s was uploaded by %s; it is sent only as an input of a task %s submits", errForbidden, req.Digest, m.Owner, m.Owner)
	}
	return a.authorizeInput(ctx, by, req, func(submitter string) error {
		if submitter == m.Owner {
			return nil
		}
		return fmt.Errorf("it was uploaded by %s, not by the task's submitter %s", m.Owner, submitter)
	})
}

// authorizeInput checks a delegation: by runs the attempt req.For names,
// whose task document lists the digest as an input, and that task's
// submitter may read the archive (mayRead says why not).
func (a *Agent) authorizeInput(ctx context.Context, by string, req results.Request, mayRead func(submitter string) error) error {
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
	// The submitter, not the broker: else anyone could launder results
	// out through a broker that may read them.
	if err := mayRead(orDefault(user.Submitter, user.Broker)); err != nil {
		return refuse("%v", err)
	}
	return nil
}
