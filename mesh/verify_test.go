package mesh

import (
	stded "crypto/ed25519"
	"crypto/rand"
	"math/big"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestVerifySignatureAgreesWithTheStandardLibrary: VerifySignature
// (curve25519-voi) accepts and refuses exactly what crypto/ed25519 does,
// for good signatures and for each kind of bad one — flipped bits in R
// and S, a non-canonical S (S+L), short and long signatures, and the
// small-order key and signature the standard library accepts for any
// message — so replicas running either agree on every ledger entry; each
// case once with a key seen for the first time and once with it cached.
func TestVerifySignatureAgreesWithTheStandardLibrary(t *testing.T) {
	type key struct {
		author string
		pub    stded.PublicKey
		priv   stded.PrivateKey
	}
	newKey := func(pub stded.PublicKey, priv stded.PrivateKey) key {
		lp, err := crypto.UnmarshalEd25519PublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPublicKey(lp)
		if err != nil {
			t.Fatal(err)
		}
		return key{id.String(), pub, priv}
	}
	var keys []key
	for range 8 {
		pub, priv, err := stded.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, newKey(pub, priv))
	}
	// L = 2^252 + 27742317777372353535851937790883648493, the group order.
	l := new(big.Int).SetBit(new(big.Int), 252, 1)
	tail, _ := new(big.Int).SetString("27742317777372353535851937790883648493", 10)
	l.Add(l, tail)
	plusL := func(sig []byte) []byte {
		le := make([]byte, 32)
		for i := range 32 {
			le[31-i] = sig[32+i]
		}
		s := new(big.Int).SetBytes(le)
		s.Add(s, l)
		be := s.FillBytes(make([]byte, 32))
		out := append([]byte(nil), sig[:32]...)
		for i := range 32 {
			out = append(out, be[31-i])
		}
		return out
	}
	flip := func(sig []byte, i int) []byte {
		out := append([]byte(nil), sig...)
		out[i] ^= 0x01
		return out
	}
	checked, accepted := 0, 0
	check := func(k key, domain string, payload, sig []byte, what string) {
		t.Helper()
		want := stded.Verify(k.pub, signedBytes(domain, payload), sig)
		got := VerifySignature(k.author, domain, payload, sig) == nil
		if got != want {
			t.Fatalf("%s: VerifySignature says %v, crypto/ed25519 says %v", what, got, want)
		}
		checked++
		if got {
			accepted++
		}
	}
	for i, k := range slices.Concat(keys, keys) { // the second time with each key expanded and cached
		payload := make([]byte, 100+i*97)
		_, _ = rand.Read(payload)
		sig := stded.Sign(k.priv, signedBytes("agreement", payload))
		check(k, "agreement", payload, sig, "good")
		check(k, "settlement", payload, sig, "other domain")
		for _, at := range []int{0, 17, 31, 32, 50, 63} {
			check(k, "agreement", payload, flip(sig, at), "flipped bit")
		}
		check(k, "agreement", payload, plusL(sig), "S+L")
		check(k, "agreement", payload, sig[:63], "short")
		check(k, "agreement", payload, append(append([]byte(nil), sig...), 0), "long")
	}
	// The identity point as key, and R = identity, S = 0 as signature: the
	// standard library (cofactorless, small-order points allowed) accepts it.
	ident := make([]byte, 32)
	ident[0] = 1
	small := newKey(ident, nil)
	zeroSig := append(append([]byte(nil), ident...), make([]byte, 32)...)
	check(small, "agreement", []byte("anything"), zeroSig, "small-order key")
	check(small, "agreement", []byte("anything else"), zeroSig, "small-order key, cached")
	check(small, "agreement", []byte("anything else"), flip(zeroSig, 40), "small-order key, other S")
	if accepted < len(keys) {
		t.Fatalf("only %d of %d signatures accepted", accepted, checked)
	}
}
