package consensus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Entry types.
const (
	TypeFramework  = "framework"
	TypeAgreement  = "agreement"
	TypeTaskEvent  = "task_event"
	TypeSettlement = "settlement"
	TypeMembership = "membership"
)

// Signature domains, one per entry type. A signature is made over
// "pcm:"+domain+"\x00"+payload by the Signer, so a signature for one type can
// never be replayed as another.
const (
	DomainFramework  = "ledger/framework/v1"
	DomainAgreement  = "ledger/agreement/v1"
	DomainTaskEvent  = "ledger/task_event/v1"
	DomainSettlement = "ledger/settlement/v1"
	DomainMembership = "ledger/membership/v1"
)

// Payload size limits.
const (
	MaxPayload          = 64 << 10  // every type but framework
	MaxFrameworkPayload = 256 << 10 // framework documents
	MaxIDLength         = 256
	maxSignatures       = 4
)

// Domain returns the signature domain of an entry type, or "" if unknown.
func Domain(typ string) string {
	switch typ {
	case TypeFramework:
		return DomainFramework
	case TypeAgreement:
		return DomainAgreement
	case TypeTaskEvent:
		return DomainTaskEvent
	case TypeSettlement:
		return DomainSettlement
	case TypeMembership:
		return DomainMembership
	}
	return ""
}

// Types lists the known entry types.
func Types() []string {
	return []string{TypeFramework, TypeAgreement, TypeTaskEvent, TypeSettlement, TypeMembership}
}

// Signer signs payloads for one identity (a libp2p peer ID in production).
type Signer interface {
	ID() string
	Sign(domain string, payload []byte) ([]byte, error)
}

// Verifier checks a signature made by author over payload in domain.
type Verifier interface {
	Verify(author, domain string, payload, sig []byte) error
}

// Signature is one signer's signature over an entry's exact payload bytes.
type Signature struct {
	Signer string `json:"signer"`
	Sig    []byte `json:"sig"`
}

// Entry is what is proposed to the ledger: a typed, versioned JSON payload
// and the signatures of the parties its type requires. ID is the idempotency
// key and must equal the payload's "id".
type Entry struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Payload    json.RawMessage `json:"payload"`
	Signatures []Signature     `json:"signatures"`
}

// NewEntry encodes payload as JSON (the exact bytes that are signed) and signs
// it with each signer under the type's domain. The id must match the
// payload's id.
func NewEntry(typ, id string, payload any, signers ...Signer) (Entry, error) {
	if Domain(typ) == "" {
		return Entry{}, fmt.Errorf("entry type %q: %w; known: %s", typ, ErrUnknownType, strings.Join(Types(), ", "))
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return Entry{}, fmt.Errorf("encode %s payload %q: %w", typ, id, err)
	}
	e := Entry{Type: typ, ID: id, Payload: raw}
	for _, s := range signers {
		if err := e.AddSignature(s); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// AddSignature signs the payload with s and adds (or replaces) s's signature,
// keeping signatures sorted by signer so the encoding is canonical.
func (e *Entry) AddSignature(s Signer) error {
	domain := Domain(e.Type)
	if domain == "" {
		return fmt.Errorf("entry type %q: %w", e.Type, ErrUnknownType)
	}
	sig, err := s.Sign(domain, e.Payload)
	if err != nil {
		return fmt.Errorf("sign %s %q as %s: %w", e.Type, e.ID, s.ID(), err)
	}
	e.Signatures = slices.DeleteFunc(e.Signatures, func(x Signature) bool { return x.Signer == s.ID() })
	e.Signatures = append(e.Signatures, Signature{Signer: s.ID(), Sig: sig})
	sort.Slice(e.Signatures, func(i, j int) bool { return e.Signatures[i].Signer < e.Signatures[j].Signer })
	return nil
}

// Validate checks everything about e that does not depend on ledger state:
// the type, the size limit, the payload schema, and that exactly the
// required parties signed the exact payload bytes under the type's domain.
func (e *Entry) Validate(v Verifier) error {
	_, err := e.validate(v)
	return err
}

// validate is Validate, returning the decoded payload.
func (e *Entry) validate(v Verifier) (payload, error) {
	p, err := e.decode()
	if err != nil {
		return nil, err
	}
	return p, e.verifySignatures(p.signers(), v)
}

// decode checks type, size and schema and returns the typed payload.
func (e *Entry) decode() (payload, error) {
	domain := Domain(e.Type)
	if domain == "" {
		return nil, fmt.Errorf("entry type %q: %w; known: %s", e.Type, ErrUnknownType, strings.Join(Types(), ", "))
	}
	limit := MaxPayload
	if e.Type == TypeFramework {
		limit = MaxFrameworkPayload
	}
	if len(e.Payload) > limit {
		return nil, fmt.Errorf("%s %q: payload is %d bytes, the limit is %d: %w", e.Type, e.ID, len(e.Payload), limit, ErrTooLarge)
	}
	if e.ID == "" || len(e.ID) > MaxIDLength || !wellFormedID(e.ID) {
		return nil, fmt.Errorf("%s entry: id must be 1..%d printable characters without spaces: %w", e.Type, MaxIDLength, ErrInvalid)
	}
	if canon, err := json.Marshal(e.Payload); err != nil || !bytes.Equal(canon, e.Payload) {
		return nil, fmt.Errorf("%s %q: payload must be one compact JSON object as Go's json.Marshal writes it (no extra spaces, HTML characters escaped): %w", e.Type, e.ID, ErrInvalid)
	}
	p, err := decodePayload(e.Type, e.Payload)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", e.Type, e.ID, err)
	}
	if p.entryID() != e.ID {
		return nil, fmt.Errorf("%s %q: payload id is %q; entry id and payload id must be equal: %w", e.Type, e.ID, p.entryID(), ErrInvalid)
	}
	return p, nil
}

// verifySignatures checks that the signers are exactly the required ones and
// that every signature verifies.
func (e *Entry) verifySignatures(want []string, v Verifier) error {
	if len(e.Signatures) != len(want) || len(e.Signatures) > maxSignatures {
		return fmt.Errorf("%s %q: has %d signatures, needs exactly %d (by %s): %w",
			e.Type, e.ID, len(e.Signatures), len(want), strings.Join(want, ", "), ErrBadSignature)
	}
	seen := make(map[string]bool, len(want))
	for _, s := range e.Signatures {
		if !slices.Contains(want, s.Signer) || seen[s.Signer] {
			return fmt.Errorf("%s %q: signature by %s is not expected (needs %s): %w",
				e.Type, e.ID, s.Signer, strings.Join(want, ", "), ErrBadSignature)
		}
		seen[s.Signer] = true
		if err := v.Verify(s.Signer, Domain(e.Type), e.Payload, s.Sig); err != nil {
			return fmt.Errorf("%s %q: signature by %s does not verify for domain %s: %w: %w",
				e.Type, e.ID, s.Signer, Domain(e.Type), ErrBadSignature, err)
		}
	}
	return nil
}

// wellFormedID reports whether id is valid UTF-8 of printable, non-space
// characters (ids appear in keys, logs and terminals).
func wellFormedID(id string) bool {
	if !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
