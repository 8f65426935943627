package consensus

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestProposeRefusesBadEntries: forged signatures, wrong domains, unknown
// types and oversized payloads fail at propose time and never reach the log.
func TestProposeRefusesBadEntries(t *testing.T) {
	c := newTestCluster(t, 1, true, nil)
	l := c.start(0, true)
	c.leader(10 * time.Second)
	b, p, mallory := newSigner(t), newSigner(t), newSigner(t)
	good := agreementEntry(t, b, p, "t1", 1)
	if _, err := l.Propose(t.Context(), good); err != nil {
		t.Fatal(err)
	}

	forged := settlementEntry(t, b, p, "t1", good.ID, "s-forged", 10)
	forged.Signatures[0].Sig = mustEntry(t, TypeSettlement, "s-forged", Settlement{V: 1, ID: "s-forged", AgreementID: good.ID, Payer: b.ID(), Payee: p.ID(), Amount: 10, Time: t0}, mallory).Signatures[0].Sig

	wrongDomain := settlementEntry(t, b, p, "t1", good.ID, "s-domain", 10)
	sig, _ := b.Sign(DomainAgreement, wrongDomain.Payload)
	wrongDomain.Signatures[0].Sig = sig

	missingSigner := agreementEntry(t, b, p, "t2", 1)
	missingSigner.Signatures = missingSigner.Signatures[:1]

	unknown := good
	unknown.Type = "bribe"

	big := mustEntry(t, TypeTaskEvent, "big", TaskEvent{V: 1, ID: "big", TaskID: "t1", AgreementID: good.ID,
		Event: EventFailed, Author: p.ID(), Message: strings.Repeat("x", MaxPayload), Time: t0}, p)

	spaced := settlementEntry(t, b, p, "t1", good.ID, "s-spaced", 10)
	spaced.Payload = append([]byte(" "), spaced.Payload...)

	tests := []struct {
		name  string
		entry Entry
		want  error
		text  string
	}{
		{"forged signature", forged, ErrBadSignature, "does not verify"},
		{"wrong domain", wrongDomain, ErrBadSignature, DomainSettlement},
		{"missing signer", missingSigner, ErrBadSignature, "needs exactly 2"},
		{"unknown type", unknown, ErrUnknownType, "known: framework"},
		{"oversized payload", big, ErrTooLarge, "limit is 65536"},
		{"non-canonical payload", spaced, ErrInvalid, "compact JSON"},
	}
	before, _ := l.Head()
	lastRaft, _ := l.store.LastIndex()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Propose(t.Context(), tt.entry)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("Propose = %v; want %v mentioning %q", err, tt.want, tt.text)
			}
		})
	}
	after, _ := l.Head()
	lastRaft2, _ := l.store.LastIndex()
	if after != before || lastRaft2 != lastRaft {
		t.Fatalf("refused entries reached the ledger: head %d→%d, raft log %d→%d", before, after, lastRaft, lastRaft2)
	}
	for _, tt := range tests {
		if _, err := l.Entry(t.Context(), tt.entry.ID); !errors.Is(err, ErrNotFound) && tt.entry.ID != good.ID {
			t.Fatalf("%s: entry %q is readable: %v", tt.name, tt.entry.ID, err)
		}
	}
}

func TestProposeIdempotentAndSubscribe(t *testing.T) {
	c := newTestCluster(t, 1, true, nil)
	l := c.start(0, true)
	c.leader(10 * time.Second)
	got := make(chan Record, 10)
	cancel := l.Subscribe(func(r Record) { got <- r })
	defer cancel()
	b, p := newSigner(t), newSigner(t)
	agr := agreementEntry(t, b, p, "t1", 1)
	s := settlementEntry(t, b, p, "t1", agr.ID, "s1", 250)
	var receipts []Receipt
	for _, e := range []Entry{agr, s, s, agr} {
		r, err := l.Propose(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	if receipts[2].Index != receipts[1].Index || !receipts[2].Duplicate || !receipts[3].Duplicate || receipts[1].Duplicate {
		t.Fatalf("receipts %+v: retries must return the original index with Duplicate set", receipts)
	}
	if bal := l.Balances(); bal[b.ID()] != -250 || bal[p.ID()] != 250 {
		t.Fatalf("balances %v counted a retry twice", bal)
	}
	for want := uint64(1); want <= 2; want++ {
		select {
		case r := <-got:
			if r.Index != want {
				t.Fatalf("subscriber got index %d; want %d", r.Index, want)
			}
		case <-t.Context().Done():
			t.Fatal("no record delivered")
		}
	}
	recs, err := l.Entries(t.Context(), Filter{Type: TypeSettlement, Peer: p.ID(), Consistent: true})
	if err != nil || len(recs) != 1 || recs[0].ID != "s1" {
		t.Fatalf("Entries(settlement, payee) = %v, %v", recs, err)
	}
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil || bytes.Count(buf.Bytes(), []byte("\n")) != 2 {
		t.Fatalf("export = %q, %v", buf.String(), err)
	}
}
