package agent

import (
	"context"
	"path/filepath"
	"time"

	"github.com/pcm-mesh/pcm/agent/broker"
	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
)

// startTasks brings up the task side: the broker's store, the stream
// handlers, the ledger and table watchers, and the tasks left in flight.
func (a *Agent) startTasks(ctx context.Context) error {
	ts, err := tasks.OpenStore(a.db, filepath.Join(a.cfg.DataDir, "tasks"), a.log)
	if err != nil {
		return err
	}
	a.tasks = ts
	a.broker = broker.New(a.brokerDeps())
	if err := a.startResults(); err != nil {
		return err
	}
	a.node.Handle(negotiate.Protocol, a.provider.HandleNegotiate)
	a.node.Handle(negotiate.ProtocolSigned, a.provider.HandleNegotiate)
	a.node.Handle(TaskProtocol, a.handleTaskStream)
	a.node.Handle(SubmitProtocol, a.handleSubmitStream)
	stopSub := a.ledger.Subscribe(a.dispatch)
	stopAdverts := a.node.Table().Watch(a.broker.OnAdvert)
	a.goLoop(func() { a.followAsClient(a.runCtx) })
	a.broker.Start()
	a.provider.Start()
	a.goLoop(func() {
		<-a.runCtx.Done()
		stopSub()
		stopAdverts()
	})
	a.loadLedgerFrameworks(ctx)
	if err := a.broker.Resume(); err != nil {
		return err
	}
	a.goLoop(func() {
		if err := a.adhereConfigured(a.runCtx); err != nil {
			a.log.Error("frameworks", "err", err)
		}
	})
	a.goLoop(func() { a.provider.Recover(a.runCtx) })
	return nil
}

// dispatch hands an applied ledger record to whoever it concerns.
func (a *Agent) dispatch(r consensus.Record) {
	if r.Type == consensus.TypeFramework {
		if fw, err := frameworkFromRecord(r); err == nil {
			a.fws.add(fw)
		}
		return
	}
	a.provider.OnRecord(r)
	a.broker.OnRecord(r)
	a.onResultsRecord(r)
}

// followAsClient feeds dispatch while this agent is a ledger client (no
// local copy, so no subscription fires): it reads new records through a
// replica with a cursor, every 200 ms while records come, backing off to
// 1 s while none do (a replica serves every client's polls).
func (a *Agent) followAsClient(ctx context.Context) {
	const fast, slow = 200 * time.Millisecond, time.Second
	var cursor uint64
	wait := fast
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if a.ledger.Role() != consensus.RoleClient {
			wait = fast
			continue
		}
		got := 0
		for {
			recs, err := a.ledger.Entries(ctx, consensus.Filter{From: cursor + 1, Limit: 1000})
			if err != nil || len(recs) == 0 {
				break
			}
			for _, r := range recs {
				a.dispatch(r)
				cursor = r.Index
			}
			got += len(recs)
			if len(recs) < 1000 {
				break
			}
		}
		if got > 0 {
			wait = fast
		} else {
			wait = min(2*wait, slow)
		}
	}
}
