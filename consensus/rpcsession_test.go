package consensus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countDials wraps node i's Dial to count the streams it opens.
func countDials(l *Ledger) *atomic.Int64 {
	var n atomic.Int64
	dial := l.cfg.Dial
	l.cfg.Dial = func(ctx context.Context, id string) (net.Conn, error) {
		n.Add(1)
		return dial(ctx, id)
	}
	return &n
}

// followerOf is a node other than the leader.
func followerOf(c *testCluster, leader int) int {
	for i := range c.nodes {
		if i != leader {
			return i
		}
	}
	return -1
}

// A follower forwards its proposals to the leader on one session, however
// many, concurrently: not a stream each.
func TestFollowerProposalsShareOneSession(t *testing.T) {
	c := newTestCluster(t, 3, true, nil)
	formCluster(t, c, 3)
	li := c.leader(10 * time.Second)
	f := c.nodes[followerOf(c, li)].Ledger()
	dials := countDials(f)
	f.closeSessions() // the one it joined on
	b, p := newSigner(t), newSigner(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		wg.Go(func() {
			if _, err := f.Propose(t.Context(), agreementEntry(t, b, p, fmt.Sprintf("t%d", k), 1)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if d := dials.Load(); d < 1 || d > 2 {
		t.Errorf("%d proposals opened %d streams to the leader, want one session", n, d)
	}
	if head, _ := c.nodes[li].Ledger().Head(); head < n {
		t.Errorf("leader's head %d, want at least %d", head, n)
	}
}

// oldServer serves l's ledger protocol as an agent of an earlier version
// did: one request per stream, no sessions.
func oldServer(l *Ledger, remote string) net.Conn {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		var req request
		if err := json.NewDecoder(io.LimitReader(b, maxRequestSize)).Decode(&req); err != nil {
			return
		}
		resp := response{Error: fmt.Sprintf("ledger operation %q is unknown: invalid", req.Op), Code: "invalid"}
		if req.Op != opSession {
			resp = l.handle(context.Background(), req, remote)
		}
		resp.V = 1
		_ = json.NewEncoder(b).Encode(resp)
	}()
	return a
}

// With a leader of an earlier version, which refuses the session, a
// follower's proposals go a stream each, and still commit.
func TestProposalsReachALeaderWithoutSessions(t *testing.T) {
	c := newTestCluster(t, 3, true, nil)
	formCluster(t, c, 3)
	li := c.leader(10 * time.Second)
	leader := c.nodes[li].Ledger()
	f := c.nodes[followerOf(c, li)].Ledger()
	var dials atomic.Int64
	f.cfg.Dial = func(ctx context.Context, id string) (net.Conn, error) {
		if id != leader.cfg.ID {
			return nil, fmt.Errorf("test: only the leader is reachable")
		}
		dials.Add(1)
		return oldServer(leader, f.cfg.ID), nil
	}
	f.closeSessions() // the one it joined on
	b, p := newSigner(t), newSigner(t)
	const n = 5
	for k := range n {
		if _, err := f.Propose(t.Context(), agreementEntry(t, b, p, fmt.Sprintf("t%d", k), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if d := dials.Load(); d != n+1 {
		t.Errorf("%d proposals to a leader without sessions opened %d streams, want %d (one refused session, then one each)", n, d, n+1)
	}
}
