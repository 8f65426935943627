package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
)

// openLedger opens this agent's ledger replica over libp2p streams: raft on
// /pcm/raft/1.0.0 and joins, forwarded proposals and reads on
// /pcm/ledger/1.0.0. An agent with no bootstrap peers (or told to)
// bootstraps its own ledger; others join through their bootstrap peers.
func (a *Agent) openLedger() error {
	layer, err := a.node.RaftLayer()
	if err != nil {
		return err
	}
	cfg := consensus.DefaultConfig()
	cfg.ID = a.ID()
	cfg.Dir = filepath.Join(a.cfg.DataDir, "ledger")
	cfg.Bootstrap = a.cfg.Ledger.Bootstrap || len(a.cfg.Bootstrap) == 0
	if a.cfg.Ledger.MaxVoters > 0 {
		cfg.MaxVoters = a.cfg.Ledger.MaxVoters
	}
	if a.cfg.Ledger.MaxNonVoters > 0 {
		cfg.MaxNonVoters = a.cfg.Ledger.MaxNonVoters
	}
	if a.cfg.Ledger.VoterTimeout > 0 {
		cfg.VoterTimeout = a.cfg.Ledger.VoterTimeout
	}
	// A loaded 2-core machine running several agents and their tasks can
	// starve raft's heartbeats for half a second; these timeouts keep the
	// leader stable there at the cost of a slower failover (~2-3 s).
	mult := time.Duration(max(1, a.cfg.Ledger.RaftMultiplier))
	cfg.HeartbeatTimeout = mult * 1500 * time.Millisecond
	cfg.ElectionTimeout = mult * 1500 * time.Millisecond
	cfg.LeaderLeaseTimeout = mult * time.Second
	log := a.log.With("component", "ledger")
	cfg.Transport = consensus.NewStreamTransport(layer, log)
	cfg.Dial = func(ctx context.Context, id string) (net.Conn, error) {
		return a.node.DialConn(ctx, id, mesh.LedgerProtocol)
	}
	cfg.Verifier = mesh.Verifier{}
	cfg.Admit = orDefault(a.cfg.Ledger.Admit, consensus.AdmitAllowList)
	cfg.Voters, cfg.NonVoters = a.cfg.Ledger.Voters, a.cfg.Ledger.NonVoters
	cfg.CheckPayload = checkLedgerPayload
	cfg.Signer = a.deps.Identity
	cfg.Logger = log
	// One state database per agent: the ledger's state and the broker's
	// task records (startTasks); raft's log keeps its own (synced).
	db, err := consensus.OpenDB(cfg.Dir, log)
	if err != nil {
		layer.Close()
		return fmt.Errorf("open ledger in %s: %w", cfg.Dir, err)
	}
	a.db = db
	cfg.DB = db
	l, err := consensus.Open(cfg)
	if err != nil {
		layer.Close()
		return fmt.Errorf("open ledger in %s: %w", cfg.Dir, err)
	}
	a.ledger = l
	ln, err := a.node.Listen(mesh.LedgerProtocol)
	if err != nil {
		return err
	}
	a.ledgerLn = ln
	a.goLoop(func() { a.serveLedger(ln) })
	return nil
}

// checkLedgerPayload is the ledger's content check: a framework entry must
// hold a framework document that parses and validates, whose content id is
// the entry's id. It is deterministic (rules has no clock and no I/O).
func checkLedgerPayload(typ string, payload []byte) error {
	if typ != consensus.TypeFramework {
		return nil
	}
	var p consensus.FrameworkPublished
	if err := json.Unmarshal(payload, &p); err != nil {
		return err
	}
	fw, err := rules.ParseFramework("ledger", p.Document)
	if err != nil {
		return err
	}
	if fw.ID() != p.ID {
		return fmt.Errorf("framework content id is %s, the entry says %s", fw.ID(), p.ID)
	}
	return nil
}

// serveLedger serves the ledger protocol's streams. Each handler counts in
// a.wg, so Close waits for it before it closes the state database the
// handler may be reading (closing it under a reader crashed a stopping
// agent: a fault in Badger's unmapped tables), and its stream is closed
// when the agent stops, so a peer that does not read cannot hold Close.
func (a *Agent) serveLedger(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		a.serveLedgerConn(conn) // inside a goLoop: the count is not zero, Close's Wait may have begun
	}
}

func (a *Agent) serveLedgerConn(conn net.Conn) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		stop := context.AfterFunc(a.runCtx, func() { _ = conn.Close() })
		defer stop()
		a.ledger.ServeConn(conn)
	}()
}

// startLedger starts raft and, for agents that did not bootstrap, joins
// the mesh's ledger through the bootstrap peers in the background.
func (a *Agent) startLedger(ctx, runCtx context.Context) error {
	if err := a.ledger.Start(ctx); err != nil {
		return fmt.Errorf("start ledger: %w", err)
	}
	var via []string
	for _, b := range a.cfg.Bootstrap {
		if ai, err := mesh.ParseAddrInfo(b); err == nil {
			via = append(via, ai.ID.String())
		}
	}
	if a.cfg.Ledger.Bootstrap || len(a.cfg.Bootstrap) == 0 {
		// The bootstrapping agent heals too: cut off long enough, the
		// majority removes it; it then joins again through the replicas
		// it knew (and its bootstrap peers, if any).
		a.ledgerJoined.Store(true)
		a.goLoop(func() { a.rejoinOrphan(runCtx, via) })
		return nil
	}
	a.goLoop(func() {
		for runCtx.Err() == nil {
			jctx, cancel := context.WithTimeout(runCtx, time.Minute)
			role, err := a.ledger.Join(jctx, via)
			cancel()
			if err == nil {
				a.log.Info("joined the ledger", "role", role)
				a.ledgerJoined.Store(true)
				a.rejoinOrphan(runCtx, via)
				return
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			a.log.Warn("join ledger", "via", via, "err", err)
		}
	})
	return nil
}

// rejoinOrphan joins again when this replica has known no leader for a
// while: the leader removes a replica it could not reach for
// voter_timeout, and raft does not tell the removed one, which would
// otherwise wait for heartbeats forever.
func (a *Agent) rejoinOrphan(ctx context.Context, via []string) {
	const orphanAfter = 30 * time.Second
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var since time.Time
	lastAsk := time.Now()
	const clientAskEvery = 30 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.ledger.Role() == consensus.RoleClient && len(via) > 0 && time.Since(lastAsk) > clientAskEvery {
			// A client asks again now and then: a voter may have admitted
			// it since (pcm-agent ledger admit), and the leader then
			// makes it a replica.
			lastAsk = time.Now()
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if role, err := a.ledger.Join(jctx, via); err == nil && role != consensus.RoleClient {
				a.log.Info("admitted to the ledger", "role", role)
			}
			cancel()
		}
		if a.ledger.Role() == consensus.RoleClient || a.ledger.Leader() != "" {
			since = time.Time{}
			a.leaderlessSince.Store(nil)
			continue
		}
		if since.IsZero() {
			since = time.Now()
			a.leaderlessSince.Store(&since)
		}
		if time.Since(since) < orphanAfter {
			continue
		}
		peers := slices.Clone(via)
		for _, id := range a.ledger.ConfiguredReplicas() {
			if id != a.ID() && !slices.Contains(peers, id) {
				peers = append(peers, id)
			}
		}
		if len(peers) == 0 {
			continue
		}
		jctx, cancel := context.WithTimeout(ctx, time.Minute)
		role, err := a.ledger.Join(jctx, peers)
		cancel()
		a.log.Warn("no ledger leader for a while: joined again", "role", role, "err", err)
		since = time.Time{}
	}
}

// Ledger is the agent's ledger replica.
func (a *Agent) Ledger() *consensus.Ledger { return a.ledger }

// LedgerReady reports whether this agent has joined the ledger: a replica
// that knows a leader, or a client (beyond the replica caps) that reads
// and proposes through one.
func (a *Agent) LedgerReady() bool {
	if a.ledger == nil || !a.ledgerJoined.Load() {
		return false
	}
	return a.ledger.Role() == consensus.RoleClient || a.ledger.Leader() != ""
}

// LedgerHealth is the ledger as this agent sees it; Degraded says why it
// cannot write (no leader known, for how long).
type LedgerHealth struct {
	Role     consensus.Role `json:"role"`
	Leader   string         `json:"leader,omitempty"`
	Index    uint64         `json:"index"`
	Healthy  bool           `json:"healthy"`
	Degraded string         `json:"degraded,omitempty"`
}

// LedgerHealth reports the ledger's state for status and /metrics.
func (a *Agent) LedgerHealth() LedgerHealth {
	if a.ledger == nil {
		return LedgerHealth{Degraded: "the ledger is not open"}
	}
	idx, _ := a.ledger.Head()
	h := LedgerHealth{Role: a.ledger.Role(), Leader: a.ledger.Leader(), Index: idx}
	switch {
	case !a.ledgerJoined.Load():
		h.Degraded = "not joined yet: joining through the bootstrap peers"
	case h.Role != consensus.RoleClient && h.Leader == "":
		h.Degraded = "no ledger leader known"
		if s := a.leaderlessSince.Load(); s != nil {
			h.Degraded += fmt.Sprintf(" for %s: writes (agreements, task events, frameworks) wait; this replica rejoins after 30 s", time.Since(*s).Round(time.Second))
		}
	}
	h.Healthy = h.Degraded == ""
	return h
}
