package mesh

import "errors"

// Sentinel errors.
var (
	ErrKeyMode      = errors.New("identity key file is readable by others")
	ErrKeyCorrupt   = errors.New("identity key file is corrupt")
	ErrBadSignature = errors.New("bad signature")
	ErrTooLarge     = errors.New("message too large")
	ErrClosed       = errors.New("mesh closed")
	// ErrListen: a listen address could not be bound, typically because
	// another process holds the port.
	ErrListen = errors.New("cannot listen")
	// ErrNoDHTPeers: a provide found no DHT peer to store the record on
	// (a lone node); the reprovide loop tries again once there are peers.
	ErrNoDHTPeers = errors.New("no DHT peers yet")
)
