package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
)

// rejectRogue is a CheckPayload that accepts a framework document only if
// it names rules (the agent plugs in the real rules parser).
func rejectRogue(typ string, payload []byte) error {
	var p FrameworkPublished
	if err := json.Unmarshal(payload, &p); err != nil {
		return err
	}
	if !strings.Contains(string(p.Document), "rules") {
		return errors.New("document has no rules section")
	}
	return nil
}

// TestApplyRefusesWhatProposeWouldRefuse: entries that reach the raft log
// without the propose checks (as a hostile leader or a forged log would
// put them there) are refused on apply by every replica, recorded as
// refused in the same way everywhere, and change no head or balance.
func TestApplyRefusesWhatProposeWouldRefuse(t *testing.T) {
	c := newTestCluster(t, 3, true, func(cfg *Config) { cfg.CheckPayload = rejectRogue })
	formCluster(t, c, 3)
	li := c.leader(10 * time.Second)
	l := c.nodes[li].Ledger()
	b, p, mallory := newSigner(t), newSigner(t), newSigner(t)
	agr := agreementEntry(t, b, p, "t1", 1)
	if _, err := l.Propose(t.Context(), agr); err != nil {
		t.Fatal(err)
	}
	var a Agreement
	_ = json.Unmarshal(agr.Payload, &a)

	rogue := mustEntry(t, TypeFramework, "fw-rogue", FrameworkPublished{V: 1, ID: "fw-rogue", Author: mallory.ID(), Document: json.RawMessage(`{"name":"rogue"}`), Time: t0}, mallory)
	oneSig := agreementEntry(t, b, p, "t2", 1)
	oneSig.Signatures = oneSig.Signatures[:1]
	eventByStranger := mustEntry(t, TypeTaskEvent, "t1-a1/succeeded", TaskEvent{V: 1, ID: "t1-a1/succeeded", TaskID: "t1", AgreementID: a.ID, Event: EventSucceeded, Author: mallory.ID(), Time: t0}, mallory)
	paidByPayee := mustEntry(t, TypeSettlement, "s-payee", Settlement{V: 1, ID: "s-payee", TaskID: "t1", AgreementID: a.ID, Payer: b.ID(), Payee: p.ID(), Amount: 5, Time: t0}, p)
	paidByPayee.Signatures[0].Signer = b.ID() // claims the payer signed it
	selfAdmit := mustEntry(t, TypeMembership, "membership/m/1", MembershipNote{V: 1, ID: "membership/m/1", Node: mallory.ID(), Change: ChangeAdmitVoter, Author: mallory.ID(), Time: t0}, mallory)
	bad := []Entry{rogue, oneSig, eventByStranger, paidByPayee, selfAdmit}

	eventually(t, 10*time.Second, "replicas to agree", func() bool { return allSame(heads(c)) })
	before := heads(c)
	data, _ := json.Marshal(command{Entries: bad})
	if err := l.raft.Apply(data, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "every replica to apply the forged log", func() bool {
		for i := range c.nodes {
			if len(c.nodes[i].Ledger().RefusedEntries(0)) < len(bad) {
				return false
			}
		}
		return true
	})
	after := heads(c)
	if !slices.Equal(before, after) {
		t.Fatalf("heads changed: %v → %v", before, after)
	}
	want := c.nodes[0].Ledger().RefusedEntries(0)
	for i, r := range want {
		if r.ID != bad[i].ID {
			t.Fatalf("refused record %d is %s, want %s", i, r.ID, bad[i].ID)
		}
		t.Logf("refused %s %s: %s", r.Type, r.ID, r.Reason)
	}
	for i := range c.nodes {
		got := c.nodes[i].Ledger().RefusedEntries(0)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("node %d recorded other refusals:\n%v\nwant\n%v", i, got, want)
		}
		if bal := c.nodes[i].Ledger().Balances(); bal[p.ID()] != 0 {
			t.Fatalf("node %d: payee balance %d after a refused settlement", i, bal[p.ID()])
		}
		if c.nodes[i].Ledger().Refusals()[RefusedApply] < uint64(len(bad)) {
			t.Fatalf("node %d counts %v refusals", i, c.nodes[i].Ledger().Refusals())
		}
		if _, ok := c.nodes[i].Ledger().Admitted()[mallory.ID()]; ok {
			t.Fatalf("node %d admitted the self-admitting peer", i)
		}
	}
	// The same entries are refused at propose, with the reason.
	for _, e := range bad {
		if _, err := l.Propose(t.Context(), e); err == nil {
			t.Fatalf("propose %s %s: accepted", e.Type, e.ID)
		}
	}
}

func heads(c *testCluster) []string {
	var out []string
	for _, n := range c.nodes {
		i, h := n.Ledger().Head()
		out = append(out, fmt.Sprintf("%d:%s", i, h))
	}
	return out
}

// TestJoinsDecidedByAuthenticatedPeer: a join naming another node is
// refused; a flood of joins by strangers leaves them clients under the
// default allow-list; a voter can admit a peer, which then joins as voter.
func TestJoinsDecidedByAuthenticatedPeer(t *testing.T) {
	c := newTestCluster(t, 2, true, func(cfg *Config) { cfg.Voters = nil })
	l0 := c.start(0, true)
	c.leader(10 * time.Second)
	mallory := newSigner(t)
	victim := newSigner(t)

	// A join signed by mallory for herself but sent as if by the victim.
	sj := signJoinAs(t, mallory, mallory.ID())
	a, b := netPipe()
	go l0.ServeConn(peerConn{Conn: b, remote: victim.ID()})
	resp := roundTrip(t, a, request{V: 1, Op: opJoin, Join: sj})
	if resp.Code != "not_admitted" {
		t.Fatalf("join for another node answered %+v; want not_admitted", resp)
	}
	// An unsigned join naming a node (the old wire form).
	a, b = netPipe()
	go l0.ServeConn(peerConn{Conn: b, remote: mallory.ID()})
	resp = roundTrip(t, a, request{V: 1, Op: opJoin})
	if resp.Code != "invalid" {
		t.Fatalf("unsigned join answered %+v; want invalid", resp)
	}
	// A flood of valid joins by strangers: all clients, no change.
	for range 50 {
		s := newSigner(t)
		a, b := netPipe()
		go l0.ServeConn(peerConn{Conn: b, remote: s.ID()})
		resp := roundTrip(t, a, request{V: 1, Op: opJoin, Join: signJoinAs(t, s, s.ID())})
		if resp.Error != "" || resp.Role != RoleClient {
			t.Fatalf("stranger's join answered %+v; want client", resp)
		}
	}
	m := membership(t, l0)
	if len(m.Voters) != 1 || len(m.NonVoters) != 0 {
		t.Fatalf("after the flood: voters %v non-voters %v", m.Voters, m.NonVoters)
	}
	if l0.Refusals()[RefusedJoin] < 2 {
		t.Fatalf("refusals %v; want 2 joins counted", l0.Refusals())
	}

	// A voter admits node 1; its join then makes it a voter.
	if _, err := l0.Admit(t.Context(), c.nodes[1].signer.ID(), RoleVoter); err != nil {
		t.Fatal(err)
	}
	l1 := c.start(1, false)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	role, err := l1.Join(ctx, c.ids(0))
	if err != nil || role != RoleVoter {
		t.Fatalf("admitted node joined as %q, %v", role, err)
	}
}

func signJoinAs(t *testing.T, s *testSigner, node string) *SignedJoin {
	t.Helper()
	now := time.Now().UTC()
	raw, _ := json.Marshal(JoinRequest{V: 1, Node: node, Time: now, Expires: now.Add(time.Minute)})
	sig, err := s.Sign(DomainJoin, raw)
	if err != nil {
		t.Fatal(err)
	}
	return &SignedJoin{Request: raw, Sig: sig}
}

// TestRaftGateRefusesStrangers: over real libp2p, a stranger's raft
// AppendEntries and RequestVote with a higher term reach no replica:
// refused and counted, terms and heads unchanged, writes go on.
func TestRaftGateRefusesStrangers(t *testing.T) {
	c := newTestCluster(t, 3, false, nil)
	formCluster(t, c, 3)
	li := c.leader(20 * time.Second)
	l := c.nodes[li].Ledger()
	b, p := newSigner(t), newSigner(t)
	if _, err := l.Propose(t.Context(), agreementEntry(t, b, p, "t1", 1)); err != nil {
		t.Fatal(err)
	}
	term := l.raft.CurrentTerm()

	mallory := newSigner(t)
	h, err := libp2p.New(libp2p.Identity(mallory.priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.ResourceManager(&network.NullResourceManager{}), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tr := raft.NewNetworkTransport(&hostileLayer{h: h}, 1, 2*time.Second, nil)
	defer tr.Close()
	for i, n := range c.nodes {
		nh := n.host
		h.Peerstore().AddAddrs(nh.ID(), nh.Addrs(), peerstore.PermanentAddrTTL)
		target := raft.ServerAddress(n.signer.ID())
		var ae raft.AppendEntriesResponse
		err := tr.AppendEntries(raft.ServerID(n.signer.ID()), target, &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte(mallory.ID()), Addr: []byte(mallory.ID())},
			Term:      term + 1000, PrevLogEntry: 0, PrevLogTerm: 0, LeaderCommitIndex: 1 << 20,
			Entries: []*raft.Log{{Index: 1 << 19, Term: term + 1000, Type: raft.LogCommand, Data: []byte(`{"entries":[]}`)}},
		}, &ae)
		if err == nil {
			t.Fatalf("node %d answered a stranger's AppendEntries: %+v", i, ae)
		}
		var rv raft.RequestVoteResponse
		if err := tr.RequestVote(raft.ServerID(n.signer.ID()), target, &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ID: []byte(mallory.ID()), Addr: []byte(mallory.ID())}, Term: term + 1000, LastLogIndex: 1 << 20, LastLogTerm: term + 1000,
		}, &rv); err == nil {
			t.Fatalf("node %d answered a stranger's RequestVote: %+v", i, rv)
		}
	}
	for i, n := range c.nodes {
		if got := n.Ledger().raft.CurrentTerm(); got > term {
			t.Fatalf("node %d term moved %d → %d", i, term, got)
		}
		if in, _ := n.Ledger().RaftRefused(); in == 0 {
			t.Fatalf("node %d counted no refused raft stream", i)
		}
	}
	if got := c.leader(10 * time.Second); got != li {
		t.Fatalf("leadership moved from %d to %d", li, got)
	}
	if _, err := l.Propose(t.Context(), agreementEntry(t, b, p, "t2", 1)); err != nil {
		t.Fatalf("write after the attack: %v", err)
	}
	if hs := heads(c); !allSame(hs) {
		eventually(t, 10*time.Second, "heads to agree", func() bool { return allSame(heads(c)) })
	}
}

func allSame(s []string) bool {
	for _, x := range s {
		if x != s[0] {
			return false
		}
	}
	return true
}

// hostileLayer dials raft streams from a non-member host.
type hostileLayer struct {
	h    host.Host
	once sync.Once
	done chan struct{}
}

func (l *hostileLayer) Accept() (net.Conn, error) {
	l.once.Do(func() { l.done = make(chan struct{}) })
	<-l.done
	return nil, errors.New("closed")
}

func (l *hostileLayer) Close() error {
	l.once.Do(func() { l.done = make(chan struct{}) })
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *hostileLayer) Addr() net.Addr { return peerAddr("mallory") }

func (l *hostileLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(a))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gostream.Dial(ctx, l.h, pid, RaftProtocol)
}

func netPipe() (net.Conn, net.Conn) { return net.Pipe() }

// roundTrip sends one ledger request on conn and reads the answer.
func roundTrip(t *testing.T, conn net.Conn, req request) response {
	t.Helper()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		t.Fatal(err)
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	return resp
}
