package rules

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testKey signs like the mesh identity: Ed25519 over "pcm:"+domain+"\x00"+payload.
type testKey struct {
	priv crypto.PrivKey
	id   string
}

func newTestKey(t testing.TB) *testKey {
	t.Helper()
	priv, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{priv: priv, id: id.String()}
}

func signedBytes(domain string, payload []byte) []byte {
	return append([]byte("pcm:"+domain+"\x00"), payload...)
}

func (k *testKey) ID() string { return k.id }
func (k *testKey) Sign(domain string, payload []byte) ([]byte, error) {
	return k.priv.Sign(signedBytes(domain, payload))
}

type testVerifier struct{}

func (testVerifier) Verify(author, domain string, payload, sig []byte) error {
	id, err := peer.Decode(author)
	if err != nil {
		return err
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return err
	}
	ok, err := pub.Verify(signedBytes(domain, payload), sig)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("ed25519 signature does not match")
	}
	return nil
}

var (
	_ Signer   = (*testKey)(nil)
	_ Verifier = testVerifier{}
)

func TestSignVerifyFramework(t *testing.T) {
	f := mustFramework(t, "framework-ai.yaml")
	author, other := newTestKey(t), newTestKey(t)
	sf, err := SignFramework(f, author)
	if err != nil {
		t.Fatal(err)
	}
	if sf.ID != f.ID() || sf.Author != author.ID() || !bytes.Equal(sf.Document, f.Canonical()) {
		t.Fatalf("signed framework does not carry id, author and canonical document: %+v", sf)
	}
	got, err := sf.Verify(testVerifier{})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got.ID() != f.ID() {
		t.Fatalf("verified id %s != %s", got.ID(), f.ID())
	}

	tamperedDoc := bytes.Replace(bytes.Clone(sf.Document), []byte(`"max":"30"`), []byte(`"max":"31"`), 1)
	if bytes.Equal(tamperedDoc, sf.Document) {
		t.Fatal("test did not tamper the document")
	}
	otherSigned, err := SignFramework(f, other)
	if err != nil {
		t.Fatal(err)
	}
	// A re-signed document with the hash fixed but not canonical.
	nonCanonical := append(bytes.Clone(sf.Document[:len(sf.Document)-1]), []byte(` }`)...)
	ncSig, err := author.Sign(DomainFramework, nonCanonical)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		sf   SignedFramework
		want error
	}{
		{"tampered document", SignedFramework{ID: sf.ID, Author: sf.Author, Document: tamperedDoc, Signature: sf.Signature}, ErrIDMismatch},
		{"tampered document with matching id", SignedFramework{ID: frameworkID(tamperedDoc), Author: sf.Author, Document: tamperedDoc, Signature: sf.Signature}, ErrBadSignature},
		{"tampered signature", SignedFramework{ID: sf.ID, Author: sf.Author, Document: sf.Document, Signature: flip(sf.Signature)}, ErrBadSignature},
		{"signature of someone else", SignedFramework{ID: sf.ID, Author: sf.Author, Document: sf.Document, Signature: otherSigned.Signature}, ErrBadSignature},
		{"wrong author", SignedFramework{ID: sf.ID, Author: other.ID(), Document: sf.Document, Signature: sf.Signature}, ErrBadSignature},
		{"not canonical", SignedFramework{ID: frameworkID(nonCanonical), Author: sf.Author, Document: nonCanonical, Signature: ncSig}, ErrIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.sf.Verify(testVerifier{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 1
	return c
}
