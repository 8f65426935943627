package consensus

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Membership is the raft configuration as one replica sees it, with every
// replica's progress.
type Membership struct {
	Leader    string          `json:"leader"`
	Voters    []string        `json:"voters"`
	NonVoters []string        `json:"non_voters"`
	Replicas  []ReplicaStatus `json:"replicas"`
	// Policy is the answering replica's admission policy.
	Policy AdmissionPolicy `json:"policy"`
}

// AdmissionPolicy says who may become a replica (Config.Admit).
type AdmissionPolicy struct {
	Admit     string          `json:"admit"`
	Voters    []string        `json:"voters,omitempty"`     // this replica's configured allow-list
	NonVoters []string        `json:"non_voters,omitempty"` // this replica's configured allow-list
	Admitted  map[string]Role `json:"admitted,omitempty"`   // admitted by voters through the ledger
}

// ReplicaStatus is one replica's state; Error is set when it did not answer.
type ReplicaStatus struct {
	ID        string `json:"id"`
	Role      Role   `json:"role"`
	Leader    bool   `json:"leader"`
	Index     uint64 `json:"index"`
	Hash      string `json:"hash"`
	RaftIndex uint64 `json:"raft_index"`
	// Reads is the highest agreement version the replica applies
	// (BilledAgreementVersion; absent from replicas of earlier versions).
	Reads int    `json:"reads,omitempty"`
	Error string `json:"error,omitempty"`
}

// joinCallTimeout bounds one join request to one peer: the leader may
// take up to 10 s to add a replica (AddVoter), plus a forward.
const joinCallTimeout = 15 * time.Second

// Join asks the peers in via (any replica forwards to the leader) to add this
// node, and retries until one answers or ctx ends. The leader adds a voter
// while there are fewer than MaxVoters, else a non-voter while there are
// fewer than MaxNonVoters, else answers RoleClient: the node then reads and
// proposes through via. Joining again is harmless and returns the current role.
func (l *Ledger) Join(ctx context.Context, via []string) (Role, error) {
	l.viaMu.Lock()
	l.via = slices.DeleteFunc(slices.Clone(via), func(s string) bool { return s == l.cfg.ID })
	peers := slices.Clone(l.via)
	l.viaMu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		if r := l.Role(); r != RoleClient && l.leader() != "" {
			return r, nil
		}
		var lastErr error
		for _, p := range peers {
			sj, err := l.signJoin()
			if err != nil {
				return RoleClient, err
			}
			// Bounded per peer: a peer whose network went down never
			// answers, and the next one in via may well be the way in.
			cctx, cancel := context.WithTimeout(ctx, joinCallTimeout)
			resp, err := l.call(cctx, p, request{Op: opJoin, Join: sj})
			cancel()
			if err == nil {
				l.logger.Info("joined the ledger", "role", resp.Role, "via", shortID(p))
				return resp.Role, nil
			}
			lastErr = err
		}
		if len(peers) == 0 {
			return RoleClient, fmt.Errorf("join ledger: no peers to ask; pass replicas in via or bootstrap: %w", ErrNotLeader)
		}
		select {
		case <-ctx.Done():
			return RoleClient, fmt.Errorf("join ledger via %d peers: %w (last error: %v)", len(peers), ctx.Err(), lastErr)
		case <-l.done:
			return RoleClient, ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// handleJoin runs on the leader (other replicas forward it there). The
// node is the one that signed the join request, and on the first hop it
// must be the stream's authenticated remote peer; the policy decides the
// most it may become (policyRole).
func (l *Ledger) handleJoin(ctx context.Context, sj *SignedJoin, remote string, hops int) (Role, error) {
	node, err := l.checkJoin(sj, remote, hops)
	if err != nil {
		l.countRefusal(RefusedJoin)
		return RoleClient, err
	}
	if !l.IsLeader() {
		// A follower forwards to the leader; a client (no raft state)
		// forwards to the replica it reads through.
		target := l.forwardTarget()
		if target == "" || hops >= maxHops {
			return RoleClient, fmt.Errorf("join: this replica is not the leader: %w", ErrNotLeader)
		}
		resp, err := l.call(ctx, target, request{Op: opJoin, Join: sj, Hops: hops + 1})
		return resp.Role, err
	}
	l.memberMu.Lock()
	defer l.memberMu.Unlock()
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return RoleClient, fmt.Errorf("read ledger configuration: %w", err)
	}
	voters, nonVoters := 0, 0
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == node {
			if s.Suffrage == raft.Voter {
				return RoleVoter, nil
			}
			return RoleNonVoter, nil
		}
		if s.Suffrage == raft.Voter {
			voters++
		} else {
			nonVoters++
		}
	}
	allowed := l.policyRole(node)
	id, addr := raft.ServerID(node), raft.ServerAddress(node)
	switch {
	case allowed == RoleClient:
		l.logger.Debug("join as client: not on the ledger's allow-list", "peer", shortID(node))
		return RoleClient, nil
	case allowed == RoleVoter && l.cfg.Admit != AdmitOpen && voters < l.cfg.MaxVoters:
		// Allow-listed by the operator: a voter at once.
		if err := l.raft.AddVoter(id, addr, 0, 10*time.Second).Error(); err != nil {
			return RoleClient, l.raftErr("add voter", err)
		}
		l.note(node, "added voter")
		return RoleVoter, nil
	case nonVoters < l.cfg.MaxNonVoters || (l.cfg.Admit == AdmitOpen && allowed == RoleVoter && voters+nonVoters < l.cfg.MaxVoters+l.cfg.MaxNonVoters):
		// Open admission starts everyone as a non-voter; reconcile
		// promotes it once it has answered heartbeats for a while, so
		// joiners that go silent never hold a share of the quorum.
		if err := l.raft.AddNonvoter(id, addr, 0, 10*time.Second).Error(); err != nil {
			return RoleClient, l.raftErr("add non-voter", err)
		}
		l.addedAt.Store(node, time.Now())
		l.note(node, "added non-voter")
		return RoleNonVoter, nil
	}
	return RoleClient, nil
}

// promotable reports whether a non-voter may take a voter seat: the policy
// allows it and, under open admission, it has been a replica answering
// heartbeats for at least two heartbeat timeouts (a node added by an
// earlier leader counts as old enough).
func (l *Ledger) promotable(node string) bool {
	if l.policyRole(node) != RoleVoter {
		return false
	}
	if l.cfg.Admit != AdmitOpen {
		return true
	}
	v, ok := l.addedAt.Load(node)
	return !ok || time.Since(v.(time.Time)) >= 2*l.cfg.HeartbeatTimeout
}

func (l *Ledger) raftErr(what string, err error) error {
	if err == raft.ErrNotLeader || err == raft.ErrLeadershipLost {
		return fmt.Errorf("%s: %w: %w", what, ErrNotLeader, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// note records a membership change in the ledger when a Signer is set.
func (l *Ledger) note(node, change string) {
	l.logger.Info("ledger membership changed", "peer", shortID(node), "change", change)
	if l.cfg.Signer == nil {
		return
	}
	now := time.Now().UTC()
	n := MembershipNote{V: PayloadVersion, ID: fmt.Sprintf("membership/%s/%d", node, now.UnixNano()),
		Node: node, Change: change, Author: l.cfg.Signer.ID(), Time: now}
	e, err := NewEntry(TypeMembership, n.ID, n, l.cfg.Signer)
	if err != nil {
		l.logger.Warn("sign membership note", "err", err)
		return
	}
	if l.closed() {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := l.bounded(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := l.Propose(ctx, e); err != nil {
			l.logger.Debug("record membership note", "err", err)
		}
	}()
}

// monitor runs for the ledger's life. On the leader it removes a voter or
// non-voter whose heartbeats have failed for longer than VoterTimeout and
// promotes a healthy non-voter while voters are fewer than MaxVoters.
func (l *Ledger) monitor(obs chan raft.Observation) {
	defer l.wg.Done()
	failing := map[raft.ServerID]time.Time{}
	tick := time.NewTicker(max(l.cfg.VoterTimeout/4, 20*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case o := <-obs:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, ok := failing[d.PeerID]; !ok {
					// From the first failure seen, not raft's LastContact:
					// for a replica removed and added again, LastContact is
					// its contact before the removal, and it was removed
					// again at once ("rejoined, then fell out again").
					failing[d.PeerID] = time.Now()
				}
			case raft.ResumedHeartbeatObservation:
				delete(failing, d.PeerID)
			}
		case <-tick.C:
			if !l.IsLeader() {
				clear(failing)
				continue
			}
			l.reconcile(failing)
		}
	}
}

// reconcile removes long-failing servers and fills voter seats.
func (l *Ledger) reconcile(failing map[raft.ServerID]time.Time) {
	l.memberMu.Lock()
	defer l.memberMu.Unlock()
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	voters := 0
	inConf := map[raft.ServerID]bool{}
	for _, s := range servers {
		inConf[s.ID] = true
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// A failure seen after a server's removal must not count against it
	// when it is added again (it was removed again at once).
	for id := range failing {
		if !inConf[id] {
			delete(failing, id)
		}
	}
	for _, s := range servers {
		since, bad := failing[s.ID]
		if !bad || time.Since(since) < l.cfg.VoterTimeout || string(s.ID) == l.cfg.ID {
			continue
		}
		if err := l.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
			l.logger.Warn("remove unreachable ledger replica", "peer", shortID(string(s.ID)), "err", err)
			return
		}
		delete(failing, s.ID)
		if s.Suffrage == raft.Voter {
			voters--
			l.note(string(s.ID), fmt.Sprintf("removed voter unreachable for %s", l.cfg.VoterTimeout))
		} else {
			l.note(string(s.ID), fmt.Sprintf("removed non-voter unreachable for %s", l.cfg.VoterTimeout))
		}
	}
	for _, s := range servers {
		if voters >= l.cfg.MaxVoters {
			return
		}
		if _, bad := failing[s.ID]; bad || s.Suffrage == raft.Voter || !l.promotable(string(s.ID)) {
			continue
		}
		if err := l.raft.AddVoter(s.ID, s.Address, 0, 5*time.Second).Error(); err != nil {
			l.logger.Warn("promote non-voter", "peer", shortID(string(s.ID)), "err", err)
			return
		}
		voters++
		l.note(string(s.ID), "promoted non-voter to voter")
	}
}

// Members returns the configuration with every replica's progress; a
// client-role node asks a replica.
func (l *Ledger) Members(ctx context.Context) (Membership, error) { return l.members(ctx, 0) }

func (l *Ledger) members(ctx context.Context, hops int) (Membership, error) {
	var m Membership
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return m, fmt.Errorf("read ledger configuration: %w", err)
	}
	servers := f.Configuration().Servers
	if l.Role() == RoleClient {
		target := l.forwardTarget()
		if target == "" || hops >= maxHops {
			return m, fmt.Errorf("members: this node holds no ledger and knows no replica; join first: %w", ErrNotReplica)
		}
		resp, err := l.call(ctx, target, request{Op: opMembers, Hops: hops + 1})
		if err != nil {
			return m, err
		}
		return *resp.Membership, nil
	}
	m.Leader = l.leader()
	m.Policy = AdmissionPolicy{Admit: l.cfg.Admit, Voters: l.cfg.Voters, NonVoters: l.cfg.NonVoters, Admitted: l.Admitted()}
	m.Replicas = make([]ReplicaStatus, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		if s.Suffrage == raft.Voter {
			m.Voters = append(m.Voters, string(s.ID))
		} else {
			m.NonVoters = append(m.NonVoters, string(s.ID))
		}
		if string(s.ID) == l.cfg.ID {
			m.Replicas[i] = l.status()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			resp, err := l.call(cctx, string(s.ID), request{Op: opStatus})
			if err != nil {
				m.Replicas[i] = ReplicaStatus{ID: string(s.ID), Error: err.Error()}
				return
			}
			m.Replicas[i] = *resp.Status
		}()
	}
	wg.Wait()
	return m, nil
}

func (l *Ledger) status() ReplicaStatus {
	h, _ := l.fsm.state()
	return ReplicaStatus{ID: l.cfg.ID, Role: l.Role(), Leader: l.IsLeader(), Index: h.Index, Hash: h.Hash, RaftIndex: h.RaftIndex, Reads: int(l.reads.Load())}
}
