package agent

import (
	"context"
	"path/filepath"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
)

// startTasks brings up the task side: the broker's store, the stream
// handlers, the ledger and table watchers, and the tasks left in flight.
func (a *Agent) startTasks(ctx context.Context) error {
	ts, err := openTaskStore(filepath.Join(a.cfg.DataDir, "tasks"))
	if err != nil {
		return err
	}
	a.tasks = ts
	a.node.Handle(NegotiateProtocol, a.provider.handleNegotiate)
	a.node.Handle(TaskProtocol, a.handleTaskStream)
	a.node.Handle(SubmitProtocol, a.handleSubmitStream)
	stopSub := a.ledger.Subscribe(func(r consensus.Record) {
		if r.Type == consensus.TypeFramework {
			if fw, err := frameworkFromRecord(r); err == nil {
				a.fws.add(fw)
			}
			return
		}
		a.provider.onRecord(r)
		a.broker.onRecord(r)
	})
	stopWatch := a.node.Table().Watch(func(c mesh.Change) {
		if c.Expired {
			a.broker.providerGone(c.Provider)
		}
	})
	a.goLoop(func() {
		<-a.runCtx.Done()
		stopSub()
		stopWatch()
	})
	a.loadLedgerFrameworks(ctx)
	if err := a.broker.resume(); err != nil {
		return err
	}
	a.goLoop(func() {
		if err := a.adhereConfigured(a.runCtx); err != nil {
			a.log.Error("frameworks", "err", err)
		}
	})
	a.goLoop(func() { a.provider.recover(a.runCtx) })
	return nil
}
