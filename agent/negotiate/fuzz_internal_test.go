package negotiate

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
	env, _ := Seal(alice, KindBid, BidMsg{V: 1, CFP: "c1", TaskID: "t1", Provider: alice.ID(), Price: 5, Expires: time.Now().Add(time.Minute)})
	var buf bytes.Buffer
	_ = WriteEnv(&buf, env)
	f.Add(buf.Bytes())
	raw, _ := json.Marshal(Envelope{Kind: KindCFP, Signer: "x", Payload: []byte(`{}`)})
	f.Add(append([]byte{byte(len(raw))}, raw...))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ReadEnv(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		for _, k := range []string{KindCFP, KindBid, KindDecline, KindAward, KindRelease, KindConfirm, KindCommitted, KindAborted} {
			var v map[string]any
			_ = Open(env, k, "", &v)
		}
		var cfp CFP
		_ = Open(env, KindCFP, "", &cfp)
		_ = Wire{}.Open(env, KindCFP, "", &cfp)
		_ = Wire{}.Open(env, KindCFP, "12D3KooW", &cfp)
	})
}
