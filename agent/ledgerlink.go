package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
)

// ledgerLink is the ledger as the broker and provider use it: proposals
// retried, reads through a replica when this agent is a client.
type ledgerLink struct{ a *Agent }

// Propose returns once this agent's view of the ledger holds e.
func (l ledgerLink) Propose(ctx context.Context, e consensus.Entry) (consensus.Receipt, error) {
	return l.a.proposeRetry(ctx, e)
}

// Commit returns once e is committed, without waiting for this agent's
// replica to apply it: for agreements and task events, which their
// proposer does not read back at once (a provider that must see an
// agreement waits for it: Has).
func (l ledgerLink) Commit(ctx context.Context, e consensus.Entry) (consensus.Receipt, error) {
	return l.a.proposeUntil(ctx, e, l.a.ledger.ProposeCommitted)
}

func (l ledgerLink) Entries(ctx context.Context, f consensus.Filter) ([]consensus.Record, error) {
	return l.a.ledger.Entries(ctx, f)
}

func (l ledgerLink) Entry(ctx context.Context, id string) (consensus.Record, error) {
	return l.a.ledger.Entry(ctx, id)
}

func (l ledgerLink) AttemptEnd(agreementID string) string { return l.a.ledger.AttemptEnd(agreementID) }

func (l ledgerLink) Billing(ctx context.Context) bool { return l.a.ledger.Billing(ctx) }

func (l ledgerLink) Has(ctx context.Context, agreementID string, index uint64) error {
	return l.a.ledgerHas(ctx, agreementID, index)
}

// proposeRetry proposes e until the ledger takes it or ctx ends; retrying
// with the same entry id is safe because the ledger is idempotent. It
// returns once this agent's replica applied the entry.
func (a *Agent) proposeRetry(ctx context.Context, e consensus.Entry) (consensus.Receipt, error) {
	return a.proposeUntil(ctx, e, a.ledger.Propose)
}

// proposeUntil retries propose with e until the ledger takes or refuses it.
func (a *Agent) proposeUntil(ctx context.Context, e consensus.Entry, propose func(context.Context, consensus.Entry) (consensus.Receipt, error)) (consensus.Receipt, error) {
	backoff := 50 * time.Millisecond
	for {
		rc, err := propose(ctx, e)
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
