package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/mesh"
)

// FuzzNegotiationEnvelope: a negotiation frame of any bytes is read and
// opened as each message kind, or refused; never a panic.
func FuzzNegotiationEnvelope(f *testing.F) {
	alice, _ := mesh.GenerateIdentity()
	env, _ := seal(alice, KindBid, BidMsg{V: 1, CFP: "c1", TaskID: "t1", Provider: alice.ID(), Price: 5, Expires: time.Now().Add(time.Minute)})
	var buf bytes.Buffer
	_ = writeEnv(&buf, env)
	f.Add(buf.Bytes())
	raw, _ := json.Marshal(Envelope{Kind: KindCFP, Signer: "x", Payload: []byte(`{}`)})
	f.Add(append([]byte{byte(len(raw))}, raw...))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := readEnv(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		for _, k := range []string{KindCFP, KindBid, KindDecline, KindAward, KindRelease, KindConfirm, KindCommitted, KindAborted} {
			var v map[string]any
			_ = open(env, k, "", &v)
		}
		var cfp CFP
		_ = open(env, KindCFP, "", &cfp)
	})
}

// FuzzTaskRequest: task and submit stream requests of any bytes decode or
// are refused; never a panic.
func FuzzTaskRequest(f *testing.F) {
	var buf bytes.Buffer
	_ = mesh.WriteFrame(&buf, TaskRequest{V: 1, Op: "logs", TaskID: "t1", Follow: true}, maxFrame)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		var req TaskRequest
		_ = mesh.ReadFrame(bufio.NewReader(bytes.NewReader(data)), &req, maxFrame)
		var sub SubmitRequest
		_ = mesh.ReadFrame(bufio.NewReader(bytes.NewReader(data)), &sub, maxFrame)
	})
}
