package negotiate

import (
	"errors"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/mesh"
)

func TestOpenRefusesForgedMessages(t *testing.T) {
	alice, _ := mesh.GenerateIdentity()
	mallory, _ := mesh.GenerateIdentity()
	bid := BidMsg{V: 1, CFP: "c1", TaskID: "t1", Provider: alice.ID(), Price: 5, Expires: time.Now().Add(time.Minute)}
	good, err := Seal(alice, KindBid, bid)
	if err != nil {
		t.Fatal(err)
	}
	var out BidMsg
	if err := Open(good, KindBid, alice.ID(), &out); err != nil || out.Price != 5 {
		t.Fatalf("valid bid: %v %+v", err, out)
	}
	forged, _ := Seal(mallory, KindBid, bid) // mallory bids in alice's name
	tampered := good
	tampered.Payload = []byte(`{"v":1,"cfp":"c1","task_id":"t1","provider":"` + alice.ID() + `","price":1}`)
	wrongKind := good
	wrongKind.Kind = KindConfirm
	relabelled := good
	relabelled.Signer = mallory.ID()
	for name, err := range map[string]error{
		"signed by someone else": Open(forged, KindBid, alice.ID(), &out),
		"payload changed":        Open(tampered, KindBid, alice.ID(), &out),
		"kind changed":           Open(wrongKind, KindConfirm, alice.ID(), &out),
		"signer field swapped":   Open(relabelled, KindBid, mallory.ID(), &out),
		"expected another kind":  Open(good, KindAward, alice.ID(), &out),
	} {
		if !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err = %v, want ErrBadMessage", name, err)
		}
	}
}

// On Protocol (1.1.0) messages are not signed: the stream's authenticated
// peer is the sender, and a message naming anyone else is refused.
func TestPlainWireTakesTheStreamPeerAsSender(t *testing.T) {
	alice, _ := mesh.GenerateIdentity()
	mallory, _ := mesh.GenerateIdentity()
	plain := WireFor(alice, Protocol)
	if plain.Signed {
		t.Fatal("Protocol's wire signs")
	}
	bid := BidMsg{V: 1, CFP: "c1", TaskID: "t1", Provider: alice.ID(), Price: 5}
	env, err := plain.Seal(KindBid, bid)
	if err != nil {
		t.Fatal(err)
	}
	if env.Signer != "" || len(env.Sig) != 0 {
		t.Fatalf("plain envelope carries signer %q and a %d-byte signature", env.Signer, len(env.Sig))
	}
	var out BidMsg
	if err := plain.Open(env, KindBid, alice.ID(), &out); err != nil || out.Price != 5 {
		t.Fatalf("plain bid from its stream's peer: %v %+v", err, out)
	}
	named := env
	named.Signer = mallory.ID()
	signed := WireFor(alice, ProtocolSigned)
	for name, err := range map[string]error{
		"names another sender":       plain.Open(named, KindBid, alice.ID(), &out),
		"another kind":               plain.Open(env, KindAward, alice.ID(), &out),
		"payload not an object":      plain.Open(Envelope{Kind: KindBid, Payload: []byte(`[1]`)}, KindBid, alice.ID(), &out),
		"unsigned on ProtocolSigned": signed.Open(env, KindBid, alice.ID(), &out),
		"signed by another on 1.0.0": signed.Open(mustSeal(t, mallory, bid), KindBid, alice.ID(), &out),
	} {
		if !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err = %v, want ErrBadMessage", name, err)
		}
	}
	good := mustSeal(t, alice, bid)
	if err := signed.Open(good, KindBid, alice.ID(), &out); err != nil {
		t.Errorf("signed bid on ProtocolSigned: %v", err)
	}
}

func mustSeal(t *testing.T, id *mesh.Identity, v any) Envelope {
	t.Helper()
	env, err := WireFor(id, ProtocolSigned).Seal(KindBid, v)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
