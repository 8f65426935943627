package consensus

import (
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzEntry: any entry bytes (a proposal, a record in a log) decode and
// validate to an entry or an error; never a panic.
func FuzzEntry(f *testing.F) {
	b, p := newSigner(f), newSigner(f)
	good := agreementEntry(f, b, p, "t1", 1)
	raw, _ := json.Marshal(good)
	f.Add(raw)
	f.Add([]byte(`{"type":"membership","id":"m","payload":{"v":1},"signatures":[]}`))
	f.Add([]byte(`{"type":"settlement","id":"s","payload":"null"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Entry
		if json.Unmarshal(data, &e) != nil {
			return
		}
		_ = e.Validate(testVerifier{})
		_, _ = decodePayload(e.Type, e.Payload)
	})
}

// FuzzFSMApply: raft log data of any bytes (what a hostile leader could
// replicate) is applied or refused by the FSM without a panic, and the
// chain head only moves by whole, valid records.
func FuzzFSMApply(f *testing.F) {
	b, p := newSigner(f), newSigner(f)
	good, _ := json.Marshal(command{Entries: []Entry{agreementEntry(f, b, p, "t1", 1)}})
	f.Add(good)
	f.Add([]byte(`{"entries":[{"type":"framework","id":"x","payload":{}}]}`))
	f.Add([]byte(`{"entries":null}`))
	dir := f.TempDir()
	db, err := openBadger(filepath.Join(dir, "fsm"), false, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = db.Close() })
	fsm, err := newFSM(db, testVerifier{}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	fsm.checkPayload = rejectRogue
	var index uint64
	f.Fuzz(func(t *testing.T, data []byte) {
		index++
		before, _ := fsm.state()
		fsm.ApplyBatch([]*raft.Log{{Index: before.RaftIndex + 1, Term: 1, Type: raft.LogCommand, Data: data}})
		after, _ := fsm.state()
		if after.Index < before.Index {
			t.Fatalf("head went back: %d → %d", before.Index, after.Index)
		}
	})
}

// FuzzServeConn: a ledger request of any bytes gets an answer or a closed
// stream; never a panic or a hang.
func FuzzServeConn(f *testing.F) {
	c := newTestCluster(f, 1, true, nil)
	l := c.start(0, true)
	c.leader(10 * time.Second)
	f.Add([]byte(`{"v":1,"op":"status"}`))
	f.Add([]byte(`{"v":1,"op":"join","join":{"request":"e30=","sig":""}}`))
	f.Add([]byte(`{"v":1,"op":"entries","filter":{"limit":-1}}`))
	f.Add([]byte(`{"v":1,"op":"propose","entry":{"type":"framework"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.ServeConn(peerConn{Conn: b, remote: "12D3KooWHostile"})
		}()
		_ = a.SetDeadline(time.Now().Add(5 * time.Second))
		go func() { _, _ = a.Write(data); _, _ = a.Write([]byte("\n")) }()
		var resp response
		_ = json.NewDecoder(a).Decode(&resp)
		_ = a.Close()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			t.Fatal("ServeConn did not return")
		}
	})
}

// FuzzResponse: a ledger answer of any bytes decodes to a response and an
// error value without a panic.
func FuzzResponse(f *testing.F) {
	f.Add([]byte(`{"v":1,"code":"not_leader","error":"x","leader":"y"}`))
	f.Add([]byte(`{"v":1,"receipt":{"index":1},"records":[{"index":1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp response
		if json.Unmarshal(data, &resp) != nil {
			return
		}
		_ = decodeError(resp.Code, resp.Error)
	})
}
