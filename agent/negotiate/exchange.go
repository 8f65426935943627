package negotiate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
)

// Exchange carries the messages of one negotiation: a stream of its own
// (ProtocolSigned, the broker's in-memory pipe to itself) or one of the
// negotiations a Session multiplexes (Protocol).
type Exchange interface {
	// Send writes one message of this negotiation.
	Send(env Envelope) error
	// Recv returns the negotiation's next message; it gives up when ctx
	// ends (ErrCut wraps the cause then).
	Recv(ctx context.Context) (Envelope, error)
	// Close ends the negotiation on this side. A broker that closes a
	// negotiation it has not ended (release, committed, aborted) or seen
	// declined tells the provider to drop its hold.
	Close() error
}

// ErrCut is Recv's error when its context ended first.
var ErrCut = errors.New("negotiation cut off")

// terminal reports whether a message of kind ends a negotiation.
func terminal(kind string) bool {
	switch kind {
	case KindDecline, KindRelease, KindCommitted, KindAborted:
		return true
	}
	return false
}

// StreamExchange is one negotiation on a stream of its own: closing the
// stream ends it on both sides.
func StreamExchange(c Conn) Exchange {
	return &streamExchange{c: c, r: bufio.NewReaderSize(c, 4096)}
}

type streamExchange struct {
	c Conn
	r *bufio.Reader
}

func (x *streamExchange) Send(env Envelope) error { return WriteEnv(x.c, env) }

// Recv reads the next envelope. It sets the stream's read deadline to
// ctx's and also closes the stream when ctx ends during the read: not
// every transport honours deadlines (libp2p's mocknet ignores them), and
// a peer that never answers must not hold a negotiation forever.
func (x *streamExchange) Recv(ctx context.Context) (Envelope, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = x.c.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = x.c.Close() })
	env, err := ReadEnv(x.r)
	if !stop() && err != nil {
		return env, fmt.Errorf("%w: %w", ErrCut, context.Cause(ctx))
	}
	return env, err
}

func (x *streamExchange) Close() error { return x.c.Close() }
