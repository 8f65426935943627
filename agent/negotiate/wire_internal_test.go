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
