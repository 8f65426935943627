package rules

import (
	"encoding/json"
	"fmt"
)

// DomainFramework is the signature domain of published frameworks.
const DomainFramework = "framework/v1"

// Signer signs payloads under a domain; ID is the author (a libp2p peer id
// in production). Implemented by the mesh identity.
type Signer interface {
	ID() string
	Sign(domain string, payload []byte) ([]byte, error)
}

// Verifier checks that author signed payload under domain.
type Verifier interface {
	Verify(author, domain string, payload, sig []byte) error
}

// SignedFramework is a framework as published: its id, its author, the
// canonical document and the author's signature over that document.
type SignedFramework struct {
	ID        string          `json:"id"`
	Author    string          `json:"author"`
	Document  json.RawMessage `json:"document"` // Framework.Canonical()
	Signature []byte          `json:"signature"`
}

// SignFramework signs f's canonical encoding with s.
func SignFramework(f *Framework, s Signer) (*SignedFramework, error) {
	f.mustValid()
	doc := f.Canonical()
	sig, err := s.Sign(DomainFramework, doc)
	if err != nil {
		return nil, fmt.Errorf("sign framework %s: %w", f.Name, err)
	}
	return &SignedFramework{ID: f.ID(), Author: s.ID(), Document: doc, Signature: sig}, nil
}

// Verify checks that ID is the hash of Document, that Author signed
// Document, and that Document is a valid framework whose canonical form is
// Document itself; it returns the parsed framework.
func (sf *SignedFramework) Verify(v Verifier, opts ...Option) (*Framework, error) {
	if got := frameworkID(sf.Document); got != sf.ID {
		return nil, fmt.Errorf("framework %s: %w: document hashes to %s; it was changed after signing", sf.ID, ErrIDMismatch, got)
	}
	if err := v.Verify(sf.Author, DomainFramework, sf.Document, sf.Signature); err != nil {
		return nil, fmt.Errorf("framework %s: %w: not signed by %s: %w", sf.ID, ErrBadSignature, sf.Author, err)
	}
	f, err := ParseFramework(sf.ID, sf.Document, opts...)
	if err != nil {
		return nil, fmt.Errorf("framework %s: %w", sf.ID, err)
	}
	if f.ID() != sf.ID {
		return nil, fmt.Errorf("framework %s: %w: document is not in canonical form (re-encodes to %s)", sf.ID, ErrIDMismatch, f.ID())
	}
	return f, nil
}
