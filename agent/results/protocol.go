package results

import (
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocol is the stream protocol that carries results archives.
const Protocol protocol.ID = "/pcm/results/1.0.0"

// Version is the "v" of every message.
const Version = 1

// MaxRequest bounds a request frame (it may carry a task document).
const MaxRequest = 256 << 10

// chunk is how much is read or written at a time; the stream's own flow
// control paces the sender to the receiver.
const chunk = 1 << 20

// Request asks a holder for an archive, from a byte offset (to resume).
type Request struct {
	V      int    `json:"v"`
	Digest string `json:"digest"`
	Offset int64  `json:"offset,omitempty"`
	// AgreementID is the attempt whose final ledger event names the
	// digest; access follows its task's rules. Empty: the holder uses
	// the attempt it stored the archive for (inputs named by digest).
	AgreementID string `json:"agreement_id,omitempty"`
	// For is set when a provider fetches the archive as an input of a
	// task it runs: the holder checks the delegation instead of the
	// requester's own entitlement.
	For *Delegation `json:"for,omitempty"`
}

// Delegation names the task (attempt) an input is fetched for. The holder
// checks that the agreement is in the ledger with the requester as its
// provider, that Document hashes to the agreement's task_hash and names
// the digest among its inputs, and that the task's submitter may read
// the results themselves.
type Delegation struct {
	AgreementID string `json:"agreement_id"`
	Document    []byte `json:"document"`
}

// Response codes.
const (
	CodeNotHeld    = "not_held"
	CodeNotYet     = "not_yet"
	CodeForbidden  = "forbidden"
	CodeBadRequest = "bad_request"
)

// Response answers a Request; when OK, Size-Offset raw archive bytes
// follow it on the stream.
type Response struct {
	V     int    `json:"v"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code classifies a refusal: "not_held" (ask another holder),
	// "not_yet" (the holder's ledger does not have the agreement yet: ask
	// again shortly),
	// "forbidden" (the access rules say no: every holder will),
	// "bad_request".
	Code string `json:"code,omitempty"`
	Size int64  `json:"size,omitempty"`
	// AgreementID is the attempt the holder keeps the archive for (a
	// receiver checks it against the ledger before relying on it).
	AgreementID string `json:"agreement_id,omitempty"`
	// Owner is the uploader of an archive no task made.
	Owner string `json:"owner,omitempty"`
}
