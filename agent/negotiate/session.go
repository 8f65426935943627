package negotiate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session limits.
const (
	// MaxActive bounds the negotiations in flight on one session; a CFP
	// beyond it is declined. (A broker runs at most 32 rounds of 3 CFPs
	// at once.)
	MaxActive = 256
	// inboxSize bounds the messages queued for one negotiation: a broker
	// sends at most three (cfp, award or release, committed or aborted),
	// a provider two. More reset the session.
	inboxSize = 4
	// writeTimeout bounds one write: a peer that stops reading ends the
	// session instead of stalling every negotiation on it.
	writeTimeout = 10 * time.Second
)

// ErrSessionEnded is Recv's error once the session's stream is gone.
var ErrSessionEnded = errors.New("negotiation session ended")

// Session carries many negotiations, concurrently, over one Protocol
// stream between a broker and a provider (agent/PROTOCOL.md): every
// envelope names its negotiation in CFP, and a negotiation starts with a
// CFP of a new id. Opening a stream per negotiation cost an agent more CPU
// than the negotiation's messages (issue 13).
type Session struct {
	c      Conn
	reset  func() error
	opener bool // the broker's side: it opens negotiations

	wmu sync.Mutex // one frame at a time

	mu     sync.Mutex
	active map[string]*sessionExchange
	used   time.Time // when a negotiation last started or ended
	err    error     // why the session ended; nil while it runs
	done   chan struct{}
	onEnd  func()
}

// NewSession runs negotiations over c; reset aborts c (a libp2p stream's
// Reset). The broker's side (opener) opens negotiations with Open and
// must run Serve in a goroutine to receive the answers; the provider's
// side runs Serve with an accept function.
func NewSession(c Conn, reset func() error, opener bool) *Session {
	return &Session{c: c, reset: reset, opener: opener, active: map[string]*sessionExchange{}, used: time.Now(), done: make(chan struct{})}
}

// Open starts negotiation id on the broker's side.
func (s *Session) Open(id string) (Exchange, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if _, dup := s.active[id]; dup {
		return nil, fmt.Errorf("%w: negotiation %s is already open", ErrBadMessage, id)
	}
	x := s.newExchangeLocked(id)
	return x, nil
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Serve reads the session's messages and hands each to its negotiation
// until the stream ends. On the provider's side, accept runs (in a
// goroutine of its own) for every CFP of a new id, its Exchange holding
// the CFP as its first message. A message that names no negotiation, or
// too many messages for one, reset the session.
func (s *Session) Serve(accept func(Exchange)) error {
	r := bufio.NewReaderSize(s.c, 4096)
	for {
		env, err := ReadEnv(r)
		if err != nil {
			s.end(fmt.Errorf("%w: %w", ErrSessionEnded, err))
			return err
		}
		id, err := negotiationID(env)
		if err != nil {
			s.Reset(err)
			return err
		}
		if err := s.route(id, env, accept); err != nil {
			s.Reset(err)
			return err
		}
	}
}

// route hands env to negotiation id, or starts it.
func (s *Session) route(id string, env Envelope, accept func(Exchange)) error {
	s.mu.Lock()
	x := s.active[id]
	switch {
	case x != nil:
		// Under the lock: the session's end closes the inbox under it.
		ok := x.deliver(env)
		s.mu.Unlock()
		if !ok {
			return fmt.Errorf("%w: more than %d messages queued for negotiation %s", ErrBadMessage, inboxSize, id)
		}
	case env.Kind == KindCFP && accept != nil:
		if len(s.active) >= MaxActive {
			s.mu.Unlock()
			return s.decline(id, fmt.Sprintf("busy: %d negotiations in flight on this session", MaxActive))
		}
		x = s.newExchangeLocked(id)
		x.deliver(env)
		s.mu.Unlock()
		go accept(x)
	default:
		s.mu.Unlock()
		if env.Kind == KindAward && accept != nil {
			// The negotiation ended here (its hold expired): say so, or
			// the broker would wait for a confirm.
			return s.decline(id, "negotiation "+id+" is over on this provider")
		}
		// Otherwise an answer for a negotiation this side already ended.
	}
	return nil
}

// decline answers negotiation id with a decline that names no provider
// rule: the provider's side refusing it without evaluating it.
func (s *Session) decline(id, reason string) error {
	d, err := Plain(KindDecline, DeclineMsg{V: Version, CFP: id, Reasons: []string{reason}})
	if err != nil {
		return err
	}
	d.CFP = id
	return s.write(d)
}

// negotiationID is the negotiation a message belongs to: a CFP's id (its
// payload's; an envelope CFP field, if any, must agree) or the envelope's
// CFP field.
func negotiationID(env Envelope) (string, error) {
	if env.Kind != KindCFP {
		if env.CFP == "" {
			return "", fmt.Errorf("%w: %s names no negotiation (envelope field cfp)", ErrBadMessage, env.Kind)
		}
		return env.CFP, nil
	}
	var head struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(env.Payload, &head); err != nil || head.ID == "" {
		return "", fmt.Errorf("%w: cfp without an id", ErrBadMessage)
	}
	if env.CFP != "" && env.CFP != head.ID {
		return "", fmt.Errorf("%w: cfp %s in an envelope for %s", ErrBadMessage, head.ID, env.CFP)
	}
	return head.ID, nil
}

// Reset ends the session at once, for both sides, with err.
func (s *Session) Reset(err error) {
	_ = s.reset()
	s.end(fmt.Errorf("%w: %w", ErrSessionEnded, err))
}

// Close ends the session.
func (s *Session) Close() error {
	err := s.c.Close()
	s.end(ErrSessionEnded)
	return err
}

func (s *Session) end(err error) { s.endIf(err, nil) }

// closeIfIdle ends the session if no negotiation ran on it for d.
func (s *Session) closeIfIdle(now time.Time, d time.Duration) bool {
	return s.endIf(ErrSessionEnded, func() bool { return len(s.active) == 0 && now.Sub(s.used) >= d })
}

// endIf ends the session with err, if it runs and only (called under the
// lock, so no negotiation starts in between) says so.
func (s *Session) endIf(err error, only func() bool) bool {
	s.mu.Lock()
	if s.err != nil || (only != nil && !only()) {
		s.mu.Unlock()
		return false
	}
	s.err = err
	for id, x := range s.active {
		close(x.in)
		delete(s.active, id)
	}
	onEnd := s.onEnd
	s.mu.Unlock()
	close(s.done)
	_ = s.c.Close()
	if onEnd != nil {
		onEnd()
	}
	return true
}

func (s *Session) write(env Envelope) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := WriteEnv(s.c, env)
	_ = s.c.SetWriteDeadline(time.Time{})
	if err != nil {
		s.Reset(err)
		return fmt.Errorf("%w: %w", ErrSessionEnded, err)
	}
	return nil
}

func (s *Session) newExchangeLocked(id string) *sessionExchange {
	x := &sessionExchange{s: s, id: id, in: make(chan Envelope, inboxSize)}
	s.active[id] = x
	s.used = time.Now()
	return x
}

// forget removes negotiation x, if it is still the one under its id.
func (s *Session) forget(x *sessionExchange) {
	s.mu.Lock()
	if s.active[x.id] == x {
		delete(s.active, x.id)
		s.used = time.Now()
	}
	s.mu.Unlock()
}

// sessionExchange is one negotiation of a Session.
type sessionExchange struct {
	s  *Session
	id string
	in chan Envelope // closed when the session ends

	mu     sync.Mutex
	ended  bool // a terminal message was sent or received
	closed bool
}

// deliver queues env; false when the inbox is full. The caller holds
// the session's lock.
func (x *sessionExchange) deliver(env Envelope) bool {
	select {
	case x.in <- env:
		return true
	default:
		return false
	}
}

func (x *sessionExchange) Send(env Envelope) error {
	x.mu.Lock()
	if terminal(env.Kind) {
		x.ended = true
	}
	x.mu.Unlock()
	env.CFP = x.id
	return x.s.write(env)
}

func (x *sessionExchange) Recv(ctx context.Context) (Envelope, error) {
	select {
	case env, ok := <-x.in:
		if !ok {
			x.s.mu.Lock()
			err := x.s.err
			x.s.mu.Unlock()
			return Envelope{}, err
		}
		if terminal(env.Kind) {
			x.mu.Lock()
			x.ended = true
			x.mu.Unlock()
		}
		return env, nil
	case <-ctx.Done():
		return Envelope{}, fmt.Errorf("%w: %w", ErrCut, context.Cause(ctx))
	}
}

// Close forgets the negotiation; on the broker's side, one it has not
// ended is released, so the provider drops its hold at once.
func (x *sessionExchange) Close() error {
	x.mu.Lock()
	release := x.s.opener && !x.ended && !x.closed
	x.closed = true
	x.mu.Unlock()
	x.s.forget(x)
	if release {
		rel, err := Plain(KindRelease, ReleaseMsg{V: Version, CFP: x.id})
		if err != nil {
			return err
		}
		rel.CFP = x.id
		select {
		case <-x.s.done:
			return nil
		default:
		}
		return x.s.write(rel)
	}
	return nil
}
