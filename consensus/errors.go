package consensus

import "errors"

// Sentinel errors. Callers test them with errors.Is; the wire protocol carries
// them as stable codes (see PROTOCOL.md) so a forwarded proposal fails with
// the same sentinel on the node that made it.
var (
	// ErrNotLeader: the operation needs the leader and no leader is known yet.
	// Retry after a leader is elected.
	ErrNotLeader = errors.New("consensus: no ledger leader is known; retry once a leader is elected")
	// ErrOutcomeUnknown: the proposal may or may not have been committed
	// (leadership changed or the leader was lost after it was sent). Retrying
	// with the same entry id is safe: the ledger applies an id at most once.
	ErrOutcomeUnknown = errors.New("consensus: outcome unknown (leader changed during the proposal); retry with the same id")
	// ErrBadSignature: a signature is missing, made by the wrong signer, made
	// for another domain or does not verify.
	ErrBadSignature = errors.New("consensus: bad signature")
	// ErrUnknownType: the entry type is not one of the known types.
	ErrUnknownType = errors.New("consensus: unknown entry type")
	// ErrTooLarge: the payload exceeds the size limit of its type.
	ErrTooLarge = errors.New("consensus: payload too large")
	// ErrInvalid: the payload does not decode or breaks a rule of its type.
	ErrInvalid = errors.New("consensus: invalid entry")
	// ErrRejected: the entry is well formed but conflicts with the ledger
	// state (unknown agreement, stale attempt, id reused with other content).
	ErrRejected = errors.New("consensus: entry rejected by ledger state")
	// ErrNotFound: no entry with that index or id.
	ErrNotFound = errors.New("consensus: not found")
	// ErrClosed: the ledger was closed.
	ErrClosed = errors.New("consensus: ledger closed")
	// ErrNotReplica: this node holds no copy of the ledger (client role).
	ErrNotReplica = errors.New("consensus: this node is not a ledger replica")
	// ErrKeyNotFound is returned by the stable store for a missing key. Its
	// text is "not found" because hashicorp/raft compares the text.
	ErrKeyNotFound = errors.New("not found")
)

// errorCodes maps sentinels to the stable codes of the wire protocol.
var errorCodes = map[string]error{
	"not_leader":      ErrNotLeader,
	"outcome_unknown": ErrOutcomeUnknown,
	"bad_signature":   ErrBadSignature,
	"unknown_type":    ErrUnknownType,
	"too_large":       ErrTooLarge,
	"invalid":         ErrInvalid,
	"rejected":        ErrRejected,
	"not_found":       ErrNotFound,
	"closed":          ErrClosed,
	"not_replica":     ErrNotReplica,
	"unauthorized":    ErrUnauthorized,
	"not_admitted":    ErrNotAdmitted,
	"not_member":      ErrNotMember,
}

// errorCode names the sentinel err wraps, or "" when none.
func errorCode(err error) string {
	for code, s := range errorCodes {
		if errors.Is(err, s) {
			return code
		}
	}
	return ""
}

// remoteError is an error received over the ledger protocol: it keeps the
// remote message and unwraps to the sentinel named by its code.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func decodeError(code, msg string) error {
	if msg == "" {
		return nil
	}
	return &remoteError{msg: msg, sentinel: errorCodes[code]}
}
