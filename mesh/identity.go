package mesh

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	voied "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// KeyFile is the identity key's file name inside the data dir.
const KeyFile = "identity.key"

// Identity is an agent's Ed25519 key pair and peer id. It signs pcm
// payloads with a domain string so a signature made for one message kind
// can never be replayed as another.
type Identity struct {
	priv crypto.PrivKey
	id   peer.ID
}

// NewIdentity wraps an existing private key.
func NewIdentity(priv crypto.PrivKey) (*Identity, error) {
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("derive peer id: %w", err)
	}
	return &Identity{priv: priv, id: id}, nil
}

// GenerateIdentity makes a fresh Ed25519 identity (not stored).
func GenerateIdentity() (*Identity, error) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return NewIdentity(priv)
}

// LoadOrCreateIdentity reads dir/identity.key, or creates it (mode 0600)
// when it does not exist. An existing file with group/other permissions or
// undecodable content is an error: it is never silently replaced.
func LoadOrCreateIdentity(dir string) (*Identity, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createIdentity(dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read identity %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stat identity %s: %w", path, err)
	}
	if mode := st.Mode().Perm(); mode&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run `chmod 600 %s`", ErrKeyMode, path, mode, path)
	}
	priv, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v; restore it from a backup, or move it away to make a new identity (a new peer id)", ErrKeyCorrupt, path, err)
	}
	if priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: %s holds a %s key; pcm needs Ed25519", ErrKeyCorrupt, path, priv.Type())
	}
	return NewIdentity(priv)
}

func createIdentity(dir, path string) (*Identity, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	ident, err := GenerateIdentity()
	if err != nil {
		return nil, err
	}
	b, err := crypto.MarshalPrivateKey(ident.priv)
	if err != nil {
		return nil, fmt.Errorf("encode identity: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create identity %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("write identity %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync identity %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close identity %s: %w", path, err)
	}
	return ident, nil
}

// PeerID is the identity's libp2p peer id.
func (i *Identity) PeerID() peer.ID { return i.id }

// ID is the peer id as a string (the author id in signed pcm documents).
func (i *Identity) ID() string { return i.id.String() }

// PrivKey is the libp2p private key (for the host).
func (i *Identity) PrivKey() crypto.PrivKey { return i.priv }

// Sign signs payload under domain.
func (i *Identity) Sign(domain string, payload []byte) ([]byte, error) {
	sig, err := i.priv.Sign(signedBytes(domain, payload))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", domain, err)
	}
	// What this process signed it need not verify: a ledger entry it
	// authored is checked again when it is proposed and applied here.
	verified.Put(sigKey(i.ID(), domain, payload, sig), struct{}{})
	return sig, nil
}

// Verifier checks signatures made by Identity.Sign, taking the public key
// from the author's peer id (Ed25519 peer ids embed it). Signatures that
// verified are remembered process-wide (see verified), so repeated checks
// of the same signed bytes cost a hash.
type Verifier struct{}

// Verify checks that sig is author's signature of payload under domain.
func (Verifier) Verify(author, domain string, payload, sig []byte) error {
	key := sigKey(author, domain, payload, sig)
	if _, ok := verified.Get(key); ok {
		return nil
	}
	if err := VerifySignature(author, domain, payload, sig); err != nil {
		return err
	}
	verified.Put(key, struct{}{})
	return nil
}

// stdlibRules: curve25519-voi checks Ed25519 signatures by exactly the
// rules of Go's crypto/ed25519 (cofactorless, small-order and
// non-canonical keys as the standard library treats them), so every
// replica accepts and refuses the same signatures whichever checks them.
var stdlibRules = &voied.Options{Verify: voied.VerifyOptionsStdLib}

// VerifySignature is Verify without the process-wide cache of verified
// signatures: the Ed25519 check itself, with curve25519-voi (31 µs instead
// of crypto/ed25519's 45 µs per signature here, 27 µs with the author's
// expanded key cached; ledger apply and negotiation spend most of their
// crypto here). Keys of other types are checked by libp2p.
func VerifySignature(author, domain string, payload, sig []byte) error {
	msg := signedBytes(domain, payload)
	if k, ok := keys.Get(author); ok {
		if !voied.VerifyExpandedWithOptions(k, msg, sig, stdlibRules) {
			return fmt.Errorf("%w: %s signature by %s does not verify", ErrBadSignature, domain, author)
		}
		return nil
	}
	pid, err := peer.Decode(author)
	if err != nil {
		return fmt.Errorf("%w: author %q is not a peer id: %v", ErrBadSignature, author, err)
	}
	pub, err := pid.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: author %s: no public key in peer id: %v", ErrBadSignature, author, err)
	}
	var ok bool
	if k, isEd := pub.(*crypto.Ed25519PublicKey); isEd {
		raw, rerr := k.Raw()
		ok = rerr == nil && len(raw) == voied.PublicKeySize && voied.VerifyWithOptions(raw, msg, sig, stdlibRules)
		if ok {
			// Expanded once the author has signed something valid: a
			// stream of garbage author ids cannot fill the cache.
			if ek, eerr := voied.NewExpandedPublicKey(raw); eerr == nil {
				keys.Put(author, ek)
			}
		}
	} else {
		ok, err = pub.Verify(msg, sig)
	}
	if err != nil || !ok {
		return fmt.Errorf("%w: %s signature by %s does not verify", ErrBadSignature, domain, author)
	}
	return nil
}

// signedBytes is what is signed: "pcm:" + domain + NUL + payload.
func signedBytes(domain string, payload []byte) []byte {
	b := make([]byte, 0, len(domain)+5+len(payload))
	b = append(b, "pcm:"...)
	b = append(b, domain...)
	b = append(b, 0)
	return append(b, payload...)
}
