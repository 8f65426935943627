package consensus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/rules/bill"
)

func billedAgreementEntry(tb testing.TB, broker, provider *testSigner, task string, terms *bill.Terms) Entry {
	id := "agr-" + task
	return mustEntry(tb, TypeAgreement, id, Agreement{V: BilledAgreementVersion, ID: id, TaskID: task, TaskHash: "h-" + task,
		Framework: "fw", Broker: broker.ID(), Provider: provider.ID(), Attempt: 1, Price: 3_600_000,
		Resources: map[string]float64{"cpu": 1}, Driver: "local", Bill: terms, Time: t0}, broker, provider)
}

func endEntry(tb testing.TB, author *testSigner, task, event string, wall float64) Entry {
	id := "agr-" + task + "/" + event
	return mustEntry(tb, TypeTaskEvent, id, TaskEvent{V: 1, ID: id, TaskID: task, AgreementID: "agr-" + task,
		Event: event, Author: author.ID(), Usage: Usage{CPUSeconds: wall, WallSeconds: wall}, Time: t0}, author)
}

// A billed agreement's attempt is billed by the ledger as its final event
// applies, once, on the agreed terms; it takes no settlement entry, a
// lost attempt is not billed, and the version goes with the terms.
func TestFSMBillsABilledAgreementsAttempt(t *testing.T) {
	f := mustNewFSM(t)
	b, p := newSigner(t), newSigner(t)
	terms := &bill.Terms{Basis: bill.BasisWall, GranularityS: 60, Minimum: 5_000}
	// 3,600,000 micros an hour = 1,000 a second; 90 s rounds up to 120 s.
	batches := [][]Entry{
		{billedAgreementEntry(t, b, p, "t1", terms)},
		{endEntry(t, p, "t1", EventStarted, 0), endEntry(t, p, "t1", EventSucceeded, 90)},
		{settlementEntry(t, b, p, "t1", "agr-t1", "s1", 120_000)},
		{billedAgreementEntry(t, b, p, "t2", terms), endEntry(t, b, "t2", EventLost, 0)},
		{billedAgreementEntry(t, b, p, "t3", terms), endEntry(t, b, "t3", EventCancelled, 0)},
		{mustEntry(t, TypeAgreement, "agr-v2", Agreement{V: BilledAgreementVersion, ID: "agr-v2", TaskID: "t4", Broker: b.ID(), Provider: p.ID(), Attempt: 1, Time: t0}, b, p)},
		{mustEntry(t, TypeAgreement, "agr-v1", Agreement{V: 1, ID: "agr-v1", TaskID: "t5", Broker: b.ID(), Provider: p.ID(), Attempt: 1, Bill: terms, Time: t0}, b, p)},
		{billedAgreementEntry(t, b, p, "t6", &bill.Terms{Basis: "gpu"})},
	}
	res := applyBatches(t, f, 1, batches)
	for i, want := range []error{nil, nil, nil, ErrRejected, nil, nil, nil, nil, ErrInvalid, ErrInvalid, ErrInvalid} {
		if !errors.Is(res[i].Err, want) || (want == nil) != (res[i].Err == nil) {
			t.Fatalf("result %d: %v; want %v", i, res[i].Err, want)
		}
	}
	if err := res[3].Err; !strings.Contains(err.Error(), "billed by the ledger") {
		t.Errorf("settlement of a billed attempt: %v; want refused as billed by the ledger", err)
	}
	got := balances(t, f)
	// t1: 120 s billed; t2 lost: nothing; t3 cancelled without usage: the minimum.
	if got[p.ID()] != 125_000 || got[b.ID()] != -125_000 {
		t.Fatalf("balances %v; want 120,000 + the 5,000 minimum paid from broker to provider", got)
	}
	l := &Ledger{fsmDB: f.db, fsm: f}
	rec, err := l.Entry(t.Context(), "agr-t1/"+EventSucceeded)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Billed == nil || *rec.Billed != (Billed{Payer: b.ID(), Payee: p.ID(), Amount: 120_000}) {
		t.Fatalf("succeeded record billed %+v; want 120,000 from the broker to the provider", rec.Billed)
	}
	if started, _ := l.Entry(t.Context(), "agr-t1/"+EventStarted); started.Billed != nil {
		t.Errorf("started event billed %+v", started.Billed)
	}
}

// A leader takes billed agreements only while every replica says it
// reads them: with one replica of an earlier version it refuses them
// (naming the way out) and Billing answers false everywhere, while
// agreements without terms still commit.
func TestLeaderTakesBilledAgreementsOnlyWhenEveryReplicaReadsThem(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := threeVoters(t)
	lead := c.leader(20 * time.Second)
	follower := c.nodes[(lead+1)%3].Ledger()
	eventually(t, 20*time.Second, "a follower to learn that the ledger bills", func() bool { return follower.Billing(t.Context()) })

	b, p := newSigner(t), newSigner(t)
	terms := &bill.Terms{Basis: bill.BasisWall}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := follower.Propose(ctx, billedAgreementEntry(t, b, p, "t1", terms)); err != nil {
		t.Fatalf("billed agreement with every replica current: %v", err)
	}
	if _, err := follower.Propose(ctx, endEntry(t, p, "t1", EventSucceeded, 7.2)); err != nil {
		t.Fatal(err)
	}
	for i, n := range c.nodes {
		l := n.Ledger()
		eventually(t, 10*time.Second, "the bill applied on every replica", func() bool { return l.Balances()[p.ID()] == 7_200 })
		if got := l.Balances()[b.ID()]; got != -7_200 {
			t.Errorf("replica %d: broker balance %d; want -7,200", i, got)
		}
	}

	// Replica (lead+2)%3 now answers like an earlier version.
	c.nodes[(lead+2)%3].Ledger().reads.Store(0)
	leader := c.nodes[lead].Ledger()
	leader.bill.mu.Lock()
	leader.bill.until = time.Time{}
	leader.bill.mu.Unlock()
	if follower.Billing(t.Context()) {
		t.Fatal("Billing with a replica of an earlier version: true")
	}
	_, err := follower.Propose(ctx, billedAgreementEntry(t, b, p, "t2", terms))
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "earlier version") || !strings.Contains(err.Error(), `"v": 1`) {
		t.Fatalf("billed agreement with a replica of an earlier version: %v; want refused, naming the replica and the fallback", err)
	}
	if _, err := follower.Propose(ctx, agreementEntry(t, b, p, "t3", 1)); err != nil {
		t.Fatalf("agreement without terms: %v", err)
	}
}
