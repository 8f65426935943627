package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
	"github.com/pcm-mesh/pcm/rules/bill"
	"github.com/pcm-mesh/pcm/testnet"
)

// Once every replica reads billed agreements, an agreement carries the
// framework's billing terms and the ledger bills the attempt as its final
// event applies: no settlement entry, the broker's task shows the same
// amount, and balances move by it and sum to zero.
func TestLedgerBillsAttemptsWithoutSettlementEntries(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Configure: func(_ int, c *agent.Config) { c.Prices = map[string]float64{"cpu": 3.6} }})
	m.WaitForMesh(20 * time.Second)
	a := m.Nodes[0].Agent()
	testnet.WaitFor(t, 20*time.Second, "the ledger to bill attempts", func() bool { return a.Ledger().Billing(t.Context()) })
	// The broker asks every 2 s until the answer is yes: its first tasks
	// may still be settled by entries.
	var tk *agent.Task
	var billed *consensus.Record
	for i := 0; billed == nil; i++ {
		if i == 10 {
			t.Fatal("10 tasks in a row were settled by settlement entries although the ledger bills")
		}
		sub, err := a.Submit(shellTask(fmt.Sprintf("billed%d", i), "sleep 0.2"), "billed.yaml")
		if err != nil {
			t.Fatal(err)
		}
		tk = waitState(t, m, a, sub.ID, 30*time.Second, agent.StateSucceeded, agent.StateFailed)
		if tk.State != agent.StateSucceeded {
			t.Fatalf("task ended %s: %s", tk.State, tk.Message)
		}
		rec, err := a.Ledger().Entry(t.Context(), tk.AgreementID+"/"+consensus.EventSucceeded)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Billed != nil {
			billed = &rec
		}
	}
	kinds := ledgerKinds(t, a, tk.ID)
	if kinds[consensus.TypeSettlement] != 0 || kinds[settled] != 1 || kinds[consensus.TypeTaskEvent] != 2 {
		t.Fatalf("ledger records of a billed task: %v; want 1 agreement, 2 events, no settlement entry", kinds)
	}
	agr, err := a.Ledger().Entry(t.Context(), tk.AgreementID)
	if err != nil {
		t.Fatal(err)
	}
	var ag consensus.Agreement
	if err := json.Unmarshal(agr.Payload, &ag); err != nil {
		t.Fatal(err)
	}
	fw := rules.DefaultFramework()
	if want := fw.BillTerms(&rules.Task{Resources: map[string]float64{"cpu": 0.5}}); ag.V != consensus.BilledAgreementVersion || ag.Bill == nil || *ag.Bill != want {
		t.Fatalf("agreement v%d bill %+v; want v%d with the framework's terms %+v", ag.V, ag.Bill, consensus.BilledAgreementVersion, want)
	}
	if billed.Billed.Amount <= 0 || billed.Billed.Amount != tk.Settled || billed.Billed.Payer != tk.Broker || billed.Billed.Payee != tk.Provider {
		t.Fatalf("billed %+v; the broker's task says %d settled, broker %s, provider %s", billed.Billed, tk.Settled, tk.Broker, tk.Provider)
	}
	var sum int64
	for _, v := range a.Ledger().Balances() {
		sum += v
	}
	if sum != 0 {
		t.Errorf("balances sum to %d", sum)
	}
}

// A provider signs the billing terms it is paid by: an award whose terms
// are not the framework's settlement section for the task, or whose
// version does not go with its terms, is refused (the stream reset); the
// right terms are confirmed.
func TestProviderSignsOnlyTheFrameworksBillingTerms(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	m.WaitForMesh(10 * time.Second)
	prov := m.Nodes[0].Agent()
	brokerID, h, ai, task := brokerProbe(t, prov)
	fw := rules.DefaultFramework()
	right := fw.BillTerms(task)
	cheaper := right
	cheaper.Minimum, cheaper.Basis = right.Minimum+1, bill.BasisCPU
	if right.Basis == bill.BasisCPU {
		cheaper.Basis = bill.BasisWall
	}
	for _, tt := range []struct {
		name  string
		v     int
		terms *bill.Terms
		want  string
	}{
		{"other terms", consensus.BilledAgreementVersion, &cheaper, ""},
		{"terms on v1", consensus.PayloadVersion, &right, ""},
		{"v2 without terms", consensus.BilledAgreementVersion, nil, ""},
		{"the framework's terms", consensus.BilledAgreementVersion, &right, negotiate.KindConfirm},
		{"no terms, v1", consensus.PayloadVersion, nil, negotiate.KindConfirm},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("bill-%d-%p", tt.v, tt.terms)
			cfp := negotiate.CFP{V: 1, ID: id, TaskID: "t" + id, Attempt: 1, Framework: fw.ID(),
				Task: task.Canonical(), TaskHash: task.Hash(), Broker: brokerID.ID(), Expires: time.Now().Add(30 * time.Second)}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := h.NewStream(ctx, ai.ID, negotiate.Protocol)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_ = s.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(s)
			send := func(kind string, v any) {
				env, err := negotiate.Plain(kind, v)
				if err != nil {
					t.Fatal(err)
				}
				env.CFP = cfp.ID // sessions route envelopes by their negotiation
				if err := mesh.WriteFrame(s, env, 1<<20); err != nil {
					t.Fatal(err)
				}
			}
			send(negotiate.KindCFP, cfp)
			var resp negotiate.Envelope
			var bid negotiate.BidMsg
			if err := mesh.ReadFrame(r, &resp, 1<<20); err != nil || resp.Kind != negotiate.KindBid || json.Unmarshal(resp.Payload, &bid) != nil {
				t.Fatalf("cfp answered %q (%v); want a bid", resp.Kind, err)
			}
			ag := consensus.Agreement{V: tt.v, ID: cfp.TaskID + "-a1", TaskID: cfp.TaskID, TaskHash: cfp.TaskHash, Framework: fw.ID(),
				Broker: brokerID.ID(), Provider: prov.ID(), Attempt: 1, Price: bid.Price, Driver: bid.Driver, Bill: tt.terms, Time: time.Now().UTC()}
			raw, _ := json.Marshal(ag)
			sig, err := brokerID.Sign(consensus.DomainAgreement, raw)
			if err != nil {
				t.Fatal(err)
			}
			send(negotiate.KindAward, negotiate.AwardMsg{V: negotiate.Version, CFP: cfp.ID, Agreement: raw, BrokerSig: sig})
			resp = negotiate.Envelope{}
			_ = mesh.ReadFrame(r, &resp, 1<<20)
			if resp.Kind != tt.want {
				t.Fatalf("award answered %q; want %q", resp.Kind, tt.want)
			}
		})
	}
}
