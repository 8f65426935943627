package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/pcm-mesh/pcm/consensus"
)

// errForbidden: the requester is not entitled to the task operation.
var errForbidden = errors.New("not entitled")

// Task operations that are authorised (Trust model in README "Security").
const (
	opCancel = "cancel"
	opLogs   = "logs"
	opQuery  = "query"
)

// authorizeTask decides whether peer by may do op on a task: its
// submitter, broker and provider may do everything; anyone else only what
// the task's framework makes public (never cancel). by is an
// authenticated peer id (the stream's remote peer, or this agent for its
// local API).
func (a *Agent) authorizeTask(ag consensus.Agreement, submitter, op, by string) error {
	if a.entitled(ag, submitter, op, by) {
		return nil
	}
	a.metrics.refused("task_" + op)
	who := fmt.Sprintf("its broker %s", ag.Broker)
	if ag.Provider != "" {
		who += ", provider " + ag.Provider
	}
	if s := orDefault(ag.Submitter, submitter); s != "" {
		who = fmt.Sprintf("its submitter %s, ", s) + who
	}
	a.log.Info("task operation refused", "op", op, "task", ag.TaskID, "by", by)
	if op == opCancel {
		return fmt.Errorf("%w: cancel of task %s is allowed to %s, not to %s", errForbidden, ag.TaskID, who, by)
	}
	return fmt.Errorf("%w: %s of task %s is allowed to %s (or anyone if its framework lists %q under public), not to %s", errForbidden, op, ag.TaskID, who, op, by)
}

// entitled is authorizeTask's decision, without counting a refusal.
func (a *Agent) entitled(ag consensus.Agreement, submitter, op, by string) bool {
	if by == "" {
		return false
	}
	if by == ag.Broker || by == ag.Provider || (submitter != "" && by == submitter) || (ag.Submitter != "" && by == ag.Submitter) {
		return true
	}
	if op != opCancel && ag.Framework != "" {
		if fw, err := a.fws.Resolve(ag.Framework); err == nil && fw.IsPublic(op) {
			return true
		}
	}
	return false
}

// authorizeBrokered checks op on a task this agent brokers.
func (a *Agent) authorizeBrokered(ctx context.Context, t *Task, op, by string) error {
	ag, _ := a.latestAgreement(ctx, t.ID)
	if ag.TaskID == "" {
		ag = consensus.Agreement{TaskID: t.ID, Broker: t.Broker}
		if fw, err := a.fws.Resolve(t.Framework); err == nil {
			ag.Framework = fw.ID()
		}
	}
	return a.authorizeTask(ag, t.Submitter, op, by)
}
