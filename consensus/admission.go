package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Admission policies: who may hold a copy of the ledger.
const (
	// AdmitAllowList (the default): a joiner becomes a replica only if it
	// is on Config.Voters or Config.NonVoters of the leader, or an existing
	// voter admitted it with an "admit voter" / "admit non-voter"
	// membership entry (pcm-agent ledger admit); everyone else is a client.
	AdmitAllowList = "allow-list"
	// AdmitOpen: any authenticated peer may become a replica up to the
	// caps. New replicas start as non-voters and are promoted only once
	// they answer heartbeats, so a flood of joins cannot take the quorum;
	// for meshes whose members trust each other (local testnets).
	AdmitOpen = "open"
)

// Membership entry changes. The leader writes "added ..."/"removed ..."/
// "promoted ..." notes as it changes raft's configuration; a voter writes
// "admit voter", "admit non-voter" and "revoke" to change the allow-list
// that the FSM keeps.
const (
	ChangeAdmitVoter    = "admit voter"
	ChangeAdmitNonVoter = "admit non-voter"
	ChangeRevoke        = "revoke"
)

// DomainJoin is the signature domain of a join request.
const DomainJoin = "ledger/join/v1"

// maxJoinAge bounds how long a signed join request may be replayed.
const maxJoinAge = 2 * time.Minute

// JoinRequest is a node's own request to join, signed by that node, so a
// replica that forwards it to the leader cannot join anyone else.
type JoinRequest struct {
	V       int       `json:"v"`
	Node    string    `json:"node"`
	Time    time.Time `json:"time"`
	Expires time.Time `json:"expires"`
}

// SignedJoin carries a JoinRequest's exact bytes and its signature.
type SignedJoin struct {
	Request json.RawMessage `json:"request"`
	Sig     []byte          `json:"sig"`
}

// ErrNotAdmitted: the peer is not entitled to what it asked (a raft seat,
// a membership entry, a join for another node).
var ErrNotAdmitted = errors.New("consensus: not admitted by the ledger's policy")

func (l *Ledger) signJoin() (*SignedJoin, error) {
	if l.cfg.Signer == nil {
		return nil, fmt.Errorf("join ledger: config has no Signer; a join must be signed by the joining node: %w", ErrInvalid)
	}
	now := time.Now().UTC()
	raw, err := json.Marshal(JoinRequest{V: PayloadVersion, Node: l.cfg.ID, Time: now, Expires: now.Add(maxJoinAge)})
	if err != nil {
		return nil, err
	}
	sig, err := l.cfg.Signer.Sign(DomainJoin, raw)
	if err != nil {
		return nil, fmt.Errorf("sign join request: %w", err)
	}
	return &SignedJoin{Request: raw, Sig: sig}, nil
}

// checkJoin returns the node a signed join speaks for. remote is the
// authenticated peer that sent it on this hop ("" when forwarded: then
// only the signature counts).
func (l *Ledger) checkJoin(sj *SignedJoin, remote string, hops int) (string, error) {
	if sj == nil {
		return "", fmt.Errorf("join request without a signed \"join\" (the node id comes from the joiner's own signature): %w", ErrInvalid)
	}
	var jr JoinRequest
	if err := json.Unmarshal(sj.Request, &jr); err != nil {
		return "", fmt.Errorf("join request does not decode: %w: %w", ErrInvalid, err)
	}
	if jr.V != PayloadVersion || jr.Node == "" || len(jr.Node) > MaxIDLength {
		return "", fmt.Errorf("join request: v must be %d and node a peer id: %w", PayloadVersion, ErrInvalid)
	}
	if hops == 0 && remote != "" && remote != jr.Node {
		return "", fmt.Errorf("join request for %s sent by %s: a node may only ask to join for itself: %w", shortID(jr.Node), shortID(remote), ErrNotAdmitted)
	}
	now := time.Now()
	if now.After(jr.Expires) || jr.Expires.Sub(jr.Time) > maxJoinAge || jr.Time.After(now.Add(maxJoinAge)) {
		return "", fmt.Errorf("join request of %s expired or is dated in the future (time %s, expires %s); sign a fresh one: %w", shortID(jr.Node), jr.Time.Format(time.RFC3339), jr.Expires.Format(time.RFC3339), ErrNotAdmitted)
	}
	if err := l.cfg.Verifier.Verify(jr.Node, DomainJoin, sj.Request, sj.Sig); err != nil {
		return "", fmt.Errorf("join request of %s: signature does not verify: %w: %w", shortID(jr.Node), ErrBadSignature, err)
	}
	return jr.Node, nil
}

// policyRole is the most a node may become under the admission policy.
func (l *Ledger) policyRole(node string) Role {
	switch {
	case l.cfg.Admit == AdmitOpen, slices.Contains(l.cfg.Voters, node):
		return RoleVoter
	case slices.Contains(l.cfg.NonVoters, node):
		return RoleNonVoter
	}
	if r, ok := l.fsm.admitted(node); ok {
		return r
	}
	return RoleClient
}

// admitRaft is the raft transport's check: members of the latest raft
// configuration, and while this node is not in it (a fresh joiner), the
// peers it joins through and the leader they named.
func (l *Ledger) admitRaft(peer string) bool {
	if peer == "" || peer == l.cfg.ID {
		return false
	}
	if l.raft != nil {
		if f := l.raft.GetConfiguration(); f.Error() == nil {
			inConf := false
			for _, s := range f.Configuration().Servers {
				if string(s.ID) == peer {
					return true
				}
				if string(s.ID) == l.cfg.ID {
					inConf = true
				}
			}
			if inConf {
				return false
			}
		}
	}
	l.viaMu.Lock()
	defer l.viaMu.Unlock()
	return peer == l.leaderHint || slices.Contains(l.via, peer)
}

// ConfiguredReplicas lists the replicas of this node's latest raft
// configuration (possibly stale on a node that was removed).
func (l *Ledger) ConfiguredReplicas() []string {
	if l.raft == nil {
		return nil
	}
	f := l.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	v, nv := serverIDs(f.Configuration())
	return append(v, nv...)
}

// RaftRefused counts raft streams refused because the peer is not a member
// (inbound: served to us; outbound: dials we refused to make).
func (l *Ledger) RaftRefused() (inbound, outbound uint64) {
	if g, ok := l.cfg.Transport.(gated); ok {
		return g.gate().refusedIn.Load(), g.gate().refusedOut.Load()
	}
	return 0, 0
}

// serverIDs returns the ids in a raft configuration by suffrage.
func serverIDs(c raft.Configuration) (voters, nonVoters []string) {
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.ID))
		} else {
			nonVoters = append(nonVoters, string(s.ID))
		}
	}
	return voters, nonVoters
}

// Admit records, as this voter, that node may become a replica in role
// (RoleVoter or RoleNonVoter) or, with RoleClient, revokes an admission.
// The leader adds an admitted node when it next asks to join (a replica
// already in the configuration keeps its seat until it is removed).
func (l *Ledger) Admit(ctx context.Context, node string, role Role) (Receipt, error) {
	if l.cfg.Signer == nil {
		return Receipt{}, fmt.Errorf("admit: config has no Signer: %w", ErrInvalid)
	}
	change := map[Role]string{RoleVoter: ChangeAdmitVoter, RoleNonVoter: ChangeAdmitNonVoter, RoleClient: ChangeRevoke}[role]
	if change == "" {
		return Receipt{}, fmt.Errorf("admit %s: role %q is unknown; use voter, nonvoter or client (revoke): %w", shortID(node), role, ErrInvalid)
	}
	now := time.Now().UTC()
	n := MembershipNote{V: PayloadVersion, ID: fmt.Sprintf("membership/%s/%d", node, now.UnixNano()),
		Node: node, Change: change, Author: l.cfg.Signer.ID(), Time: now}
	e, err := NewEntry(TypeMembership, n.ID, n, l.cfg.Signer)
	if err != nil {
		return Receipt{}, err
	}
	return l.Propose(ctx, e)
}
