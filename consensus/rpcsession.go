package consensus

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Sessions of the ledger protocol (PROTOCOL.md, "Sessions"): a client
// upgrades a /pcm/ledger/1.0.0 stream with the request {"op": "session"}
// and then sends any number of requests on it, concurrently, each framed
// and numbered (seq); the server answers each, in any order, with its seq.
// A stream per request cost more CPU than the request (its setup,
// resource accounting and close: ~0.15 ms on each side), and a follower
// forwards every proposal of its agent to the leader.
const (
	opSession = "session"
	// sessionIdle: a client closes a session no request used for this long.
	sessionIdle = 30 * time.Second
	// sessionHandlers bounds the requests a server handles at once on one
	// session; it stops reading the session while they run.
	sessionHandlers = 64
	// sessionWriteTimeout bounds one frame's write: a peer that stops
	// reading ends the session.
	sessionWriteTimeout = 10 * time.Second
	// noSessionFor is how long a client talks to a peer of an earlier
	// version (it refused the upgrade) a stream per request, before it
	// offers a session again.
	noSessionFor = time.Minute
)

// errNoSessions: the peer does not speak sessions (an earlier version).
var errNoSessions = errors.New("peer does not serve ledger sessions")

// writeFrame writes v as one frame: an unsigned varint length, then the
// JSON object.
func writeFrame(w io.Writer, v any, limit int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > limit {
		return fmt.Errorf("ledger frame of %d bytes exceeds %d: %w", len(b), limit, ErrTooLarge)
	}
	frame := binary.AppendUvarint(make([]byte, 0, len(b)+binary.MaxVarintLen64), uint64(len(b)))
	_, err = w.Write(append(frame, b...))
	return err
}

// readFrame reads one frame into v, refusing one over limit bytes.
func readFrame(r *bufio.Reader, v any, limit int) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > uint64(limit) {
		return fmt.Errorf("ledger frame of %d bytes exceeds %d: %w", n, limit, ErrTooLarge)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// serveSession answers framed requests on conn (after the upgrade) until
// the client closes it; r holds what was read past the upgrade request.
// It returns once every request it took has been answered or abandoned.
func (l *Ledger) serveSession(conn net.Conn, r io.Reader, remote string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	_ = conn.SetDeadline(time.Time{})
	var wmu sync.Mutex
	slots := make(chan struct{}, sessionHandlers)
	br := bufio.NewReaderSize(r, 4096)
	// The upgrade request may end with a newline (JSON encoders add one):
	// frames start after it.
	for {
		b, err := br.Peek(1)
		if err != nil {
			return
		}
		if b[0] != '\n' && b[0] != '\r' && b[0] != ' ' && b[0] != '\t' {
			break
		}
		_, _ = br.Discard(1)
	}
	for {
		var req request
		if err := readFrame(br, &req, maxRequestSize); err != nil {
			return
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			hctx, done := l.bounded(ctx, serveTimeout-time.Second)
			resp := response{Error: fmt.Sprintf("ledger operation %q is not served within a session", req.Op), Code: "invalid"}
			if req.Op != opSession {
				resp = l.handle(hctx, req, remote)
			}
			done()
			resp.V, resp.Seq = 1, req.Seq
			if resp.Leader == "" {
				resp.Leader = l.knownLeader()
			}
			wmu.Lock()
			_ = conn.SetWriteDeadline(time.Now().Add(sessionWriteTimeout))
			err := writeFrame(conn, resp, maxResponse)
			wmu.Unlock()
			if err != nil {
				abort(conn)
			}
		}()
	}
}

// rpcSession is a client's session with one peer.
type rpcSession struct {
	l    *Ledger
	peer string
	conn net.Conn

	wmu sync.Mutex

	mu      sync.Mutex
	seq     uint64
	pending map[uint64]chan response
	used    time.Time
	err     error
	done    chan struct{}
	idle    *time.Timer
}

// sessionSlot is a client's session with a peer, or the dial under way.
type sessionSlot struct {
	ready chan struct{} // closed once s or err is set
	s     *rpcSession
	err   error
}

// sessionTo returns this node's session with peer id, opening one if
// there is none; nil (and no error) when the peer serves only a stream
// per request.
func (l *Ledger) sessionTo(ctx context.Context, id string) (*rpcSession, error) {
	l.rpcMu.Lock()
	if l.rpcSessions == nil {
		l.rpcSessions, l.noSession = map[string]*sessionSlot{}, map[string]time.Time{}
	}
	if until, ok := l.noSession[id]; ok && time.Now().Before(until) {
		l.rpcMu.Unlock()
		return nil, nil
	}
	slot, ok := l.rpcSessions[id]
	if ok {
		l.rpcMu.Unlock()
		select {
		case <-slot.ready:
			return slot.s, slot.err
		case <-ctx.Done():
			return nil, fmt.Errorf("ledger session with %s: %w: %w", shortID(id), errRetry, ctx.Err())
		}
	}
	slot = &sessionSlot{ready: make(chan struct{})}
	l.rpcSessions[id] = slot
	l.rpcMu.Unlock()
	defer close(slot.ready)
	slot.s, slot.err = l.openSession(ctx, id)
	if slot.err != nil {
		l.rpcMu.Lock()
		delete(l.rpcSessions, id)
		if errors.Is(slot.err, errNoSessions) {
			l.noSession[id] = time.Now().Add(noSessionFor)
			slot.err = nil
		}
		l.rpcMu.Unlock()
	}
	return slot.s, slot.err
}

// openSession dials peer id and upgrades the stream to a session.
func (l *Ledger) openSession(ctx context.Context, id string) (*rpcSession, error) {
	if l.cfg.Dial == nil {
		return nil, fmt.Errorf("ledger config has no Dial, cannot reach %s: %w", shortID(id), ErrNotLeader)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := l.cfg.Dial(dctx, id)
	if err != nil {
		l.dropLeaderHint(id)
		return nil, fmt.Errorf("dial ledger peer %s: %w: %w", shortID(id), errRetry, err)
	}
	stop := context.AfterFunc(dctx, func() { abort(conn) })
	br := bufio.NewReaderSize(conn, 4096)
	var resp response
	up, _ := json.Marshal(request{V: 1, Op: opSession})
	if _, err = conn.Write(up); err == nil {
		var line []byte
		if line, err = br.ReadSlice('\n'); err == nil {
			err = json.Unmarshal(line, &resp)
		}
	}
	if !stop() || err != nil {
		abort(conn)
		if err == nil {
			err = dctx.Err()
		}
		return nil, fmt.Errorf("open a ledger session with %s: %w: %w", shortID(id), errRetry, err)
	}
	if !resp.Session {
		_ = conn.Close()
		return nil, errNoSessions
	}
	s := &rpcSession{l: l, peer: id, conn: conn, pending: map[uint64]chan response{}, used: time.Now(), done: make(chan struct{})}
	s.idle = time.AfterFunc(sessionIdle, s.closeIfIdle)
	go s.read(br)
	return s, nil
}

// call sends req on the session and waits for its answer. sent is false
// when the session had ended before req was sent (try another).
func (s *rpcSession) call(ctx context.Context, req request) (resp response, sent bool, err error) {
	ch := make(chan response, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return resp, false, s.err
	}
	s.seq++
	req.V, req.Seq = 1, s.seq
	s.pending[req.Seq] = ch
	s.used = time.Now()
	s.mu.Unlock()
	defer s.forget(req.Seq)
	s.wmu.Lock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(sessionWriteTimeout))
	err = writeFrame(s.conn, req, maxRequestSize)
	s.wmu.Unlock()
	if err != nil {
		s.end(err)
		return resp, true, s.l.lostCall(req, s.peer, err)
	}
	select {
	case resp = <-ch:
		return resp, true, nil
	case <-ctx.Done():
		return resp, true, s.l.lostCall(req, s.peer, ctx.Err())
	case <-s.done:
		return resp, true, s.l.lostCall(req, s.peer, s.err)
	}
}

func (s *rpcSession) forget(seq uint64) {
	s.mu.Lock()
	delete(s.pending, seq)
	s.used = time.Now()
	s.mu.Unlock()
}

// read hands each answer to its caller until the stream ends.
func (s *rpcSession) read(br *bufio.Reader) {
	for {
		var resp response
		if err := readFrame(br, &resp, maxResponse); err != nil {
			s.end(err)
			return
		}
		s.mu.Lock()
		ch := s.pending[resp.Seq]
		delete(s.pending, resp.Seq)
		s.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

func (s *rpcSession) closeIfIdle() {
	s.mu.Lock()
	left := sessionIdle - time.Since(s.used)
	busy := len(s.pending) > 0 || left > 0
	s.mu.Unlock()
	if !busy {
		s.end(errors.New("idle"))
		return
	}
	s.idle.Reset(max(left, time.Second))
}

// end closes the session; callers waiting get lostCall errors.
func (s *rpcSession) end(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = fmt.Errorf("ledger session with %s ended: %w", shortID(s.peer), err)
	close(s.done)
	s.mu.Unlock()
	s.idle.Stop()
	abort(s.conn)
	l := s.l
	l.rpcMu.Lock()
	if slot, ok := l.rpcSessions[s.peer]; ok && slot.s == s {
		delete(l.rpcSessions, s.peer)
	}
	l.rpcMu.Unlock()
}

// closeSessions ends this node's client sessions (Close).
func (l *Ledger) closeSessions() {
	l.rpcMu.Lock()
	var open []*rpcSession
	for _, slot := range l.rpcSessions {
		select {
		case <-slot.ready:
			if slot.s != nil {
				open = append(open, slot.s)
			}
		default:
		}
	}
	l.rpcMu.Unlock()
	for _, s := range open {
		s.end(ErrClosed)
	}
}
