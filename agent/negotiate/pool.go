package negotiate

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/mesh"
)

// Dialer opens a stream of the first of ps that a peer speaks.
type Dialer func(ctx context.Context, peer string, ps ...protocol.ID) (network.Stream, error)

// IdleTimeout is how long a broker keeps a session no negotiation uses:
// placements come in bursts, and a mesh of hundreds of agents would
// otherwise hold a session (two goroutines, buffers) for every pair that
// ever negotiated.
const IdleTimeout = 5 * time.Second

// Pool is a broker's sessions, one per provider, opened on first use and
// closed when their stream ends or after IdleTimeout unused.
type Pool struct {
	dial Dialer
	self *mesh.Identity

	mu       sync.Mutex
	sessions map[string]*pooled
	legacy   map[string]time.Time // peers that speak only ProtocolSigned, until when
	closed   bool
	sweeping bool // the idle sweep runs
	stop     chan struct{}
}

type pooled struct {
	ready  chan struct{} // closed once the dial is done
	sess   *Session      // the session, or nil:
	err    error         // the dial failed, or
	legacy bool          // the peer speaks only ProtocolSigned
}

// NewPool opens sessions with dial; self seals messages for providers
// that speak only ProtocolSigned.
func NewPool(dial Dialer, self *mesh.Identity) *Pool {
	return &Pool{dial: dial, self: self, sessions: map[string]*pooled{}, legacy: map[string]time.Time{}, stop: make(chan struct{})}
}

// Open starts negotiation id with peer: on the peer's session, opened
// now if there is none, or on a stream of its own when the peer speaks
// only ProtocolSigned. The Wire seals and opens its messages.
func (p *Pool) Open(ctx context.Context, peer, id string) (Exchange, Wire, error) {
	for tries := 0; ; tries++ {
		e, own, err := p.session(ctx, peer)
		switch {
		case err != nil:
			return nil, Wire{}, err
		case own != nil: // the dial found a peer of an earlier version
			return StreamExchange(own), WireFor(p.self, ProtocolSigned), nil
		case e == nil: // known to be of an earlier version
			s, err := p.dial(ctx, peer, ProtocolSigned)
			if err != nil {
				return nil, Wire{}, err
			}
			return StreamExchange(s), WireFor(p.self, ProtocolSigned), nil
		}
		x, err := e.sess.Open(id)
		if err == nil {
			return x, WireFor(p.self, Protocol), nil
		}
		if tries == 2 {
			return nil, Wire{}, err
		}
		p.drop(peer, e) // it ended meanwhile: open another
	}
}

// legacyFor is how long a peer that answered with ProtocolSigned is
// dialled with it alone, before a session is offered again.
const legacyFor = time.Minute

// session returns peer's pooled session, dialling it if there is none.
// For a peer of an earlier version it returns no session: own, the stream
// its dial opened, when this call dialled, nil when it was known already.
func (p *Pool) session(ctx context.Context, peer string) (e *pooled, own network.Stream, err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, nil, ErrSessionEnded
	}
	if until, ok := p.legacy[peer]; ok && time.Now().Before(until) {
		p.mu.Unlock()
		return nil, nil, nil
	}
	e, ok := p.sessions[peer]
	if ok {
		p.mu.Unlock()
		select {
		case <-e.ready:
			if e.legacy {
				return nil, nil, nil
			}
			return e, nil, e.err
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	e = &pooled{ready: make(chan struct{})}
	p.sessions[peer] = e
	p.mu.Unlock()
	defer close(e.ready)
	s, err := p.dial(ctx, peer, Protocol, ProtocolSigned)
	switch {
	case err != nil:
		e.err = err
		p.drop(peer, e) // the next Open dials again
		return nil, nil, err
	case s.Protocol() != Protocol:
		e.legacy = true
		p.mu.Lock()
		p.legacy[peer] = time.Now().Add(legacyFor)
		p.mu.Unlock()
		p.drop(peer, e)
		return nil, s, nil
	}
	e.sess = NewSession(s, s.Reset, true)
	e.sess.onEnd = func() { p.drop(peer, e) }
	go func() { _ = e.sess.Serve(nil) }()
	p.mu.Lock()
	closed := p.closed
	if !p.sweeping && !closed {
		p.sweeping = true
		go p.sweep()
	}
	p.mu.Unlock()
	if closed {
		_ = e.sess.Close()
	}
	return e, nil, nil
}

// drop forgets e as peer's session, if it still is.
func (p *Pool) drop(peer string, e *pooled) {
	p.mu.Lock()
	if p.sessions[peer] == e {
		delete(p.sessions, peer)
	}
	p.mu.Unlock()
}

// sweep closes sessions left idle for IdleTimeout, until the pool closes.
func (p *Pool) sweep() {
	t := time.NewTicker(IdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			for _, s := range p.open() {
				s.closeIfIdle(now, IdleTimeout)
			}
		}
	}
}

// open lists the pool's running sessions.
func (p *Pool) open() []*Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var open []*Session
	for _, e := range p.sessions {
		select {
		case <-e.ready:
			if e.sess != nil {
				open = append(open, e.sess)
			}
		default:
		}
	}
	return open
}

// Close ends every session; Open fails afterwards.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		close(p.stop)
	}
	p.closed = true
	p.mu.Unlock()
	for _, s := range p.open() {
		_ = s.Close()
	}
}
