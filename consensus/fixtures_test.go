package consensus

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustEntry(tb testing.TB, typ, id string, p any, signers ...Signer) Entry {
	tb.Helper()
	e, err := NewEntry(typ, id, p, signers...)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func agreementEntry(tb testing.TB, broker, provider *testSigner, task string, attempt int) Entry {
	id := fmt.Sprintf("agr-%s-%d", task, attempt)
	return mustEntry(tb, TypeAgreement, id, Agreement{V: 1, ID: id, TaskID: task, TaskHash: "h-" + task,
		Framework: "fw", Broker: broker.ID(), Provider: provider.ID(), Attempt: attempt, Price: 1_000_000,
		Resources: map[string]float64{"cpu": 1}, Driver: "local", Time: t0}, broker, provider)
}

func settlementEntry(tb testing.TB, broker, provider *testSigner, task, agreementID, id string, amount int64) Entry {
	return mustEntry(tb, TypeSettlement, id, Settlement{V: 1, ID: id, TaskID: task, AgreementID: agreementID,
		Payer: broker.ID(), Payee: provider.ID(), Amount: amount, Time: t0}, broker)
}

func eventEntry(tb testing.TB, author *testSigner, task, agreementID, id, event string) Entry {
	return mustEntry(tb, TypeTaskEvent, id, TaskEvent{V: 1, ID: id, TaskID: task, AgreementID: agreementID,
		Event: event, Author: author.ID(), Time: t0}, author)
}
