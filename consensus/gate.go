package consensus

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ErrNotMember: a raft stream to or from a peer outside the ledger's
// configuration; the transport refuses it before raft sees a byte.
var ErrNotMember = errors.New("consensus: peer is not a ledger member")

// gatedLayer is a raft.StreamLayer that serves and dials ledger members
// only. hashicorp/raft trusts its transport completely (any AppendEntries
// with a higher term is obeyed), so the membership check must sit here,
// below raft. The remote peer of an inbound conn is the authenticated
// libp2p peer id that net.Conn.RemoteAddr names (gostream conns do).
type gatedLayer struct {
	raft.StreamLayer
	admit      atomic.Pointer[func(peer string) bool]
	refusedIn  atomic.Uint64
	refusedOut atomic.Uint64
	onRefused  atomic.Pointer[func(peer string, inbound bool)]
}

func newGatedLayer(inner raft.StreamLayer) *gatedLayer {
	return &gatedLayer{StreamLayer: inner}
}

// allowed reports whether peer may speak raft with this node; before the
// ledger set its check, nobody may.
func (g *gatedLayer) allowed(peer string) bool {
	f := g.admit.Load()
	return f != nil && (*f)(peer)
}

func (g *gatedLayer) refused(peer string, inbound bool) {
	if inbound {
		g.refusedIn.Add(1)
	} else {
		g.refusedOut.Add(1)
	}
	if f := g.onRefused.Load(); f != nil {
		(*f)(peer, inbound)
	}
}

// Accept returns the next inbound conn from a member, closing the others.
func (g *gatedLayer) Accept() (net.Conn, error) {
	for {
		c, err := g.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		peer := ""
		if a := c.RemoteAddr(); a != nil {
			peer = a.String()
		}
		if g.allowed(peer) {
			return c, nil
		}
		g.refused(peer, true)
		_ = c.SetDeadline(time.Now())
		_ = c.Close()
	}
}

// Dial opens a raft stream to a member; others are refused.
func (g *gatedLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if !g.allowed(string(address)) {
		g.refused(string(address), false)
		return nil, fmt.Errorf("raft dial %s: %w", shortID(string(address)), ErrNotMember)
	}
	return g.StreamLayer.Dial(address, timeout)
}

// gated is implemented by transports whose stream layer is gated.
type gated interface {
	gate() *gatedLayer
}

// StreamTransport is raft's network transport over a gated stream layer,
// without pipelining. Build it with NewStreamTransport.
type StreamTransport struct {
	noPipeline
	g *gatedLayer
}

func (t *StreamTransport) gate() *gatedLayer { return t.g }
