package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcm-mesh/pcm/agent/results"
	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
)

// opResults is reading a task's results (Trust model).
const opResults = "results"

// errNoResults: the task's final event names no results archive.
var errNoResults = errors.New("no results")

// resultsSide keeps results archives and serves and fetches them.
type resultsSide struct {
	store   *results.Store
	fetcher *results.Fetcher
	server  *results.Server
}

// startResults opens the results store, serves /pcm/results/1.0.0 and
// provides the held digests on the DHT.
func (a *Agent) startResults() error {
	cfg := a.cfg.Results.orDefaults()
	log := a.log.With("component", "results")
	st, err := results.OpenStore(filepath.Join(a.cfg.DataDir, "results"), results.Budget{MaxBytes: cfg.MaxBytes, Retention: cfg.Retention}, log)
	if err != nil {
		return err
	}
	a.res = &resultsSide{
		store:   st,
		fetcher: &results.Fetcher{Store: st, Dial: a.node, Log: log},
		server:  &results.Server{Store: st, Authorize: a.authorizeResults, Log: log},
	}
	a.node.Handle(results.Protocol, a.res.server.Handle)
	a.goLoop(func() {
		for _, m := range st.List() {
			a.provideKey(a.runCtx, mesh.KeyResultsPrefix+m.Digest)
		}
		a.resultsUpkeep(a.runCtx, time.Hour)
	})
	return nil
}

// resultsUpkeep evicts archives past the store's budget.
func (a *Agent) resultsUpkeep(ctx context.Context, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		for _, d := range a.res.store.Evict(time.Now()) {
			a.node.Unprovide(mesh.KeyResultsPrefix + d)
		}
	}
}

// keepResults records that this agent holds an archive: it is provided
// on the DHT, and the store's budget applies.
func (a *Agent) keepResults(m results.Meta) {
	for _, d := range a.res.store.Evict(time.Now()) {
		a.node.Unprovide(mesh.KeyResultsPrefix + d)
	}
	if _, ok := a.res.store.Get(m.Digest); ok {
		a.goLoop(func() { a.provideKey(a.runCtx, mesh.KeyResultsPrefix+m.Digest) })
	}
}

// record reads one ledger record by id: locally on a replica, through
// one for a client (taskID narrows the read).
func (a *Agent) record(ctx context.Context, id, taskID string) (consensus.Record, error) {
	if a.ledger.Role() != consensus.RoleClient {
		return a.ledger.Entry(ctx, id)
	}
	recs, err := a.ledger.Entries(ctx, consensus.Filter{Task: taskID})
	if err != nil {
		return consensus.Record{}, err
	}
	for _, r := range recs {
		if r.ID == id {
			return r, nil
		}
	}
	return consensus.Record{}, fmt.Errorf("ledger entry %s: %w", id, consensus.ErrNotFound)
}

// taskOfAgreement is the task id in an agreement id ("<task>-a<attempt>").
func taskOfAgreement(id string) string {
	if i := strings.LastIndex(id, "-a"); i > 0 {
		return id[:i]
	}
	return id
}

// agreement reads an agreement from the ledger.
func (a *Agent) agreement(ctx context.Context, id string) (consensus.Agreement, error) {
	var ag consensus.Agreement
	r, err := a.record(ctx, id, taskOfAgreement(id))
	if err == nil && r.Type != consensus.TypeAgreement {
		err = fmt.Errorf("ledger entry %s is a %s, not an agreement", id, r.Type)
	}
	if err == nil {
		err = json.Unmarshal(r.Payload, &ag)
	}
	if err != nil {
		return ag, fmt.Errorf("agreement %s: %w", id, err)
	}
	return ag, nil
}

// finalEvent returns the succeeded or failed event of an attempt.
func (a *Agent) finalEvent(ctx context.Context, ag consensus.Agreement) (consensus.TaskEvent, bool) {
	for _, kind := range []string{consensus.EventSucceeded, consensus.EventFailed} {
		r, err := a.record(ctx, ag.ID+"/"+kind, ag.TaskID)
		var ev consensus.TaskEvent
		if err == nil && r.Type == consensus.TypeTaskEvent && json.Unmarshal(r.Payload, &ev) == nil {
			return ev, true
		}
	}
	return consensus.TaskEvent{}, false
}

// resultsOf returns a task's latest attempt and the results its final
// ledger event names.
func (a *Agent) resultsOf(ctx context.Context, taskID string) (consensus.Agreement, *consensus.ResultsRef, error) {
	ag, ok := a.latestAgreement(ctx, taskID)
	if !ok {
		return ag, nil, fmt.Errorf("%w: task %s has no attempt in the ledger (is the id right? it may still be queued)", tasks.ErrNotFound, taskID)
	}
	ev, ok := a.finalEvent(ctx, ag)
	if !ok {
		return ag, nil, fmt.Errorf("%w: task %s has not ended; results come with its succeeded or failed event", errNoResults, taskID)
	}
	if ev.Results == nil {
		return ag, nil, fmt.Errorf("%w: task %s declared no outputs (outputs: {paths: [...]} in its document), or its provider's driver cannot collect them", errNoResults, taskID)
	}
	return ag, ev.Results, nil
}

// FetchResults makes sure this agent holds the results of a task,
// fetching them from their holders (provider, broker, DHT providers of
// the digest) if needed, and returns the archive's meta and file.
func (a *Agent) FetchResults(ctx context.Context, taskID string, progress results.Progress) (results.Meta, string, error) {
	ag, ref, err := a.resultsOf(ctx, taskID)
	if err != nil {
		return results.Meta{}, "", err
	}
	if err := a.authorizeTask(ag, "", opResults, a.ID()); err != nil {
		return results.Meta{}, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Results.orDefaults().FetchTimeout)
	defer cancel()
	w := results.Want{Digest: ref.Digest, Size: ref.Size, TaskID: ag.TaskID, AgreementID: ag.ID}
	m, err := a.fetchResults(ctx, w, progress, ag.Provider, ag.Broker)
	if err != nil {
		return results.Meta{}, "", err
	}
	a.keepResults(m)
	return m, a.res.store.Path(m.Digest), nil
}

// fetchResults fetches w from the peers in first (provider, broker...,
// connected ones first) and, if none of them has it, from the digest's
// providers on the DHT (asked only then: a lookup takes a while).
func (a *Agent) fetchResults(ctx context.Context, w results.Want, progress results.Progress, first ...string) (results.Meta, error) {
	known := a.peersByConnection(a.otherPeers(nil, first...))
	var partiesErr error
	if _, held := a.res.store.Get(w.Digest); held || len(known) > 0 {
		m, err := a.res.fetcher.Fetch(ctx, w, known, progress)
		if err == nil || errors.Is(err, results.ErrRefused) || ctx.Err() != nil {
			return m, err
		}
		partiesErr = err
		a.log.Info("results not fetched from the task's parties; asking the DHT", "digest", w.Digest, "err", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ais, err := a.node.FindProviders(fctx, mesh.KeyResultsPrefix+w.Digest, 20)
	cancel()
	if err != nil {
		a.log.Info("find results holders on the DHT", "digest", w.Digest, "err", err)
	}
	var found []string
	for _, ai := range ais {
		found = append(found, ai.ID.String())
	}
	more := a.peersByConnection(a.otherPeers(known, found...))
	if len(more) == 0 && partiesErr != nil {
		return results.Meta{}, fmt.Errorf("%w (the DHT named no other holder)", partiesErr)
	}
	m, err := a.res.fetcher.Fetch(ctx, w, more, progress)
	if err != nil && partiesErr != nil {
		return m, fmt.Errorf("%w; before that, from the task's parties: %w", err, partiesErr)
	}
	return m, err
}

// otherPeers lists ids, once each, without this agent and those in skip.
func (a *Agent) otherPeers(skip []string, ids ...string) []string {
	var out []string
	for _, id := range ids {
		if id != "" && id != a.ID() && !slices.Contains(out, id) && !slices.Contains(skip, id) {
			out = append(out, id)
		}
	}
	return out
}

// peersByConnection puts connected peers first, keeping the order otherwise.
func (a *Agent) peersByConnection(ids []string) []string {
	net := a.node.Host().Network()
	connected := func(id string) bool {
		p, err := peer.Decode(id)
		return err == nil && net.Connectedness(p) == network.Connected
	}
	slices.SortStableFunc(ids, func(x, y string) int {
		switch cx, cy := connected(x), connected(y); {
		case cx && !cy:
			return -1
		case cy && !cx:
			return 1
		}
		return 0
	})
	return ids
}

// onResultsRecord keeps a copy of the results of tasks this agent
// brokers, so they outlive their provider.
func (a *Agent) onResultsRecord(r consensus.Record) {
	if r.Type != consensus.TypeTaskEvent {
		return
	}
	var ev consensus.TaskEvent
	if json.Unmarshal(r.Payload, &ev) != nil || ev.Results == nil || a.res == nil {
		return
	}
	if _, brokered := a.broker.Get(ev.TaskID); !brokered {
		return
	}
	if _, held := a.res.store.Get(ev.Results.Digest); held {
		return
	}
	a.goLoop(func() {
		ctx := a.runCtx
		ag, err := a.agreement(ctx, ev.AgreementID)
		if err != nil || ag.Broker != a.ID() || ag.Provider == a.ID() {
			return
		}
		w := results.Want{Digest: ev.Results.Digest, Size: ev.Results.Size, TaskID: ag.TaskID, AgreementID: ag.ID}
		for try, wait := 1, time.Second; ; try, wait = try+1, 2*wait {
			fctx, cancel := context.WithTimeout(ctx, a.cfg.Results.orDefaults().FetchTimeout)
			m, err := a.fetchResults(fctx, w, nil, ag.Provider)
			cancel()
			if err == nil {
				a.keepResults(m)
				a.log.Info("broker keeps a copy of results", "task", ag.TaskID, "digest", m.Digest, "size", m.Size)
				return
			}
			if try == 5 || ctx.Err() != nil {
				a.log.Warn("broker could not copy results; they live only on their provider", "task", ag.TaskID, "digest", w.Digest, "err", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

// HeldResults lists the results archives this agent keeps, newest first.
func (a *Agent) HeldResults() []results.Meta {
	if a.res == nil {
		return nil
	}
	return a.res.store.List()
}

// ResultsStats counts what this agent's results fetches met.
func (a *Agent) ResultsStats() results.FetchStats {
	if a.res == nil {
		return results.FetchStats{}
	}
	return a.res.fetcher.Stats()
}
