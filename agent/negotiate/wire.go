package negotiate

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/mesh"
)

// Protocol is the negotiation protocol (agent/PROTOCOL.md): one stream
// from a broker to a provider carries many negotiations (a Session), its
// messages not signed: the stream's authenticated remote peer is their
// sender.
const Protocol protocol.ID = "/pcm/negotiate/1.1.0"

// ProtocolSigned is the protocol's version 1.0.0: a stream per
// negotiation, every message signed by its sender; agents serve it, and
// use it with peers of earlier versions.
const ProtocolSigned protocol.ID = "/pcm/negotiate/1.0.0"

// DefaultLease is an attempt's lease when its agreement names none
// (agreement field lease_seconds; agent/PROTOCOL.md, "Leases").
const DefaultLease = 30 * time.Second

// MaxFrame bounds every negotiation frame.
const MaxFrame = 256 << 10

// Conn is a negotiation stream: a libp2p stream, or an in-memory pipe
// when the broker is also the provider (libp2p does not dial itself).
type Conn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Message kinds, in order.
const (
	KindCFP       = "cfp"
	KindBid       = "bid"
	KindDecline   = "decline"
	KindAward     = "award"
	KindRelease   = "release"
	KindConfirm   = "confirm"
	KindCommitted = "committed"
	KindAborted   = "aborted"
)

// Version is the negotiation payload version.
const Version = 1

// Envelope carries one message. On ProtocolSigned, Payload is the exact
// JSON that Signer signed under the domain "negotiate/<kind>/v1"; on
// Protocol, Signer and Sig are empty and CFP names the negotiation.
type Envelope struct {
	Kind    string          `json:"kind"`
	CFP     string          `json:"cfp,omitempty"` // Protocol: the negotiation (its CFP's id)
	Signer  string          `json:"signer,omitempty"`
	Payload json.RawMessage `json:"payload"`
	Sig     []byte          `json:"sig,omitempty"`
}

// Wire seals and opens the messages of one stream as its protocol says:
// signed by ID on ProtocolSigned, plain on Protocol.
type Wire struct {
	ID     *mesh.Identity
	Signed bool
}

// WireFor is the Wire of a stream that speaks protocol p.
func WireFor(id *mesh.Identity, p protocol.ID) Wire {
	return Wire{ID: id, Signed: p == ProtocolSigned}
}

// Seal makes v a message of kind, signed when the stream's protocol wants it.
func (w Wire) Seal(kind string, v any) (Envelope, error) {
	if w.Signed {
		return Seal(w.ID, kind, v)
	}
	return Plain(kind, v)
}

// Open checks that env is a message of kind from party and decodes its
// payload into v. On Protocol the caller vouches that party is the
// stream's authenticated remote peer (or this agent itself on its
// in-memory pipe); a signer field naming anyone else is refused.
func (w Wire) Open(env Envelope, kind, party string, v any) error {
	if w.Signed {
		return Open(env, kind, party, v)
	}
	if env.Kind != kind {
		return fmt.Errorf("%w: got %q, want %q", ErrBadMessage, env.Kind, kind)
	}
	if env.Signer != "" && env.Signer != party {
		return fmt.Errorf("%w: %s from %s names %s as its sender", ErrBadMessage, kind, party, env.Signer)
	}
	if err := json.Unmarshal(env.Payload, v); err != nil {
		return fmt.Errorf("%w: %s payload: %w", ErrBadMessage, kind, err)
	}
	return nil
}

// Plain makes v an unsigned message of kind (Protocol).
func Plain(kind string, v any) (Envelope, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", kind, err)
	}
	return Envelope{Kind: kind, Payload: b}, nil
}

func negotiateDomain(kind string) string { return "negotiate/" + kind + "/v1" }

// Seal signs v as a message of kind (ProtocolSigned).
func Seal(id *mesh.Identity, kind string, v any) (Envelope, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", kind, err)
	}
	sig, err := id.Sign(negotiateDomain(kind), b)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{Kind: kind, Signer: id.ID(), Payload: b, Sig: sig}, nil
}

var (
	ErrBadMessage = errors.New("bad negotiation message")
	ErrExpired    = errors.New("message expired")
)

// Open checks the envelope's kind, signer and signature and decodes its
// payload into v (ProtocolSigned).
func Open(env Envelope, kind, wantSigner string, v any) error {
	if env.Kind != kind {
		return fmt.Errorf("%w: got %q, want %q", ErrBadMessage, env.Kind, kind)
	}
	if wantSigner != "" && env.Signer != wantSigner {
		return fmt.Errorf("%w: %s signed by %s, want %s", ErrBadMessage, kind, env.Signer, wantSigner)
	}
	if err := (mesh.Verifier{}).Verify(env.Signer, negotiateDomain(kind), env.Payload, env.Sig); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	if err := json.Unmarshal(env.Payload, v); err != nil {
		return fmt.Errorf("%w: %s payload: %w", ErrBadMessage, kind, err)
	}
	return nil
}

// CFP is a broker's call for proposals for one attempt of a task.
type CFP struct {
	V         int             `json:"v"`
	ID        string          `json:"id"`
	TaskID    string          `json:"task_id"`
	Attempt   int             `json:"attempt"`
	Framework string          `json:"framework"`
	Task      json.RawMessage `json:"task"`
	TaskHash  string          `json:"task_hash"`
	Broker    string          `json:"broker"`
	Expires   time.Time       `json:"expires"`
}

// BidMsg is a provider's offer: it holds a tentative reservation until
// Expires.
type BidMsg struct {
	V        int       `json:"v"`
	CFP      string    `json:"cfp"`
	TaskID   string    `json:"task_id"`
	Provider string    `json:"provider"`
	Price    int64     `json:"price"`
	Driver   string    `json:"driver"`
	Expires  time.Time `json:"expires"`
}

// DeclineMsg says why a provider will not bid.
type DeclineMsg struct {
	V        int      `json:"v"`
	CFP      string   `json:"cfp"`
	Provider string   `json:"provider"`
	Reasons  []string `json:"reasons"`
}

// AwardMsg gives the agreement (ledger payload bytes) and the broker's
// ledger signature over it.
type AwardMsg struct {
	V         int             `json:"v"`
	CFP       string          `json:"cfp"`
	Agreement json.RawMessage `json:"agreement"`
	BrokerSig []byte          `json:"broker_sig"`
}

// ReleaseMsg frees a losing bid's reservation.
type ReleaseMsg struct {
	V   int    `json:"v"`
	CFP string `json:"cfp"`
}

// ConfirmMsg is the provider's ledger signature over the agreement.
type ConfirmMsg struct {
	V           int    `json:"v"`
	CFP         string `json:"cfp"`
	ProviderSig []byte `json:"provider_sig"`
}

// CommittedMsg tells the provider the agreement is in the ledger.
type CommittedMsg struct {
	V     int    `json:"v"`
	CFP   string `json:"cfp"`
	Index uint64 `json:"index"`
}

// AbortedMsg tells the provider the agreement did not commit.
type AbortedMsg struct {
	V      int    `json:"v"`
	CFP    string `json:"cfp"`
	Reason string `json:"reason"`
}

func WriteEnv(w io.Writer, env Envelope) error { return mesh.WriteFrame(w, env, MaxFrame) }

func ReadEnv(r *bufio.Reader) (Envelope, error) {
	var env Envelope
	err := mesh.ReadFrame(r, &env, MaxFrame)
	return env, err
}
