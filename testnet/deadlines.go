package testnet

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// deadlineHost wraps a mocknet host so that stream deadlines take effect.
// Mocknet streams ignore SetDeadline (their pipes have none), while raft's
// transport, ledger calls and negotiations rely on deadlines to give up on
// a silent peer, as they can over TCP and QUIC. Without this a large
// mocknet mesh wedges: a raft replication goroutine waits forever on a
// follower that will never answer.
type deadlineHost struct{ host.Host }

func (h deadlineHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return &deadlineStream{Stream: s}, nil
}

func (h deadlineHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(&deadlineStream{Stream: s}) })
}

func (h deadlineHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, func(s network.Stream) { handler(&deadlineStream{Stream: s}) })
}

// deadlineStream emulates deadlines: an operation started after its
// deadline fails at once with os.ErrDeadlineExceeded, and one still
// waiting when the deadline passes ends with the stream reset. An idle
// stream whose deadline passes stays usable with a new deadline, as on a
// real connection.
type deadlineStream struct {
	network.Stream

	mu               sync.Mutex
	rd, wd           time.Time
	rTimer, wTimer   *time.Timer
	reading, writing int
}

func (s *deadlineStream) Read(b []byte) (int, error) {
	if !s.begin(&s.reading, &s.rd) {
		return 0, os.ErrDeadlineExceeded
	}
	defer s.end(&s.reading)
	return s.Stream.Read(b)
}

func (s *deadlineStream) Write(b []byte) (int, error) {
	if !s.begin(&s.writing, &s.wd) {
		return 0, os.ErrDeadlineExceeded
	}
	defer s.end(&s.writing)
	return s.Stream.Write(b)
}

// begin counts an operation in; false when its deadline already passed.
func (s *deadlineStream) begin(n *int, deadline *time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !deadline.IsZero() && !time.Now().Before(*deadline) {
		return false
	}
	*n++
	return true
}

func (s *deadlineStream) end(n *int) {
	s.mu.Lock()
	*n--
	s.mu.Unlock()
}

func (s *deadlineStream) SetDeadline(t time.Time) error {
	_ = s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *deadlineStream) SetReadDeadline(t time.Time) error {
	s.set(&s.rd, &s.rTimer, &s.reading, t)
	return nil
}

func (s *deadlineStream) SetWriteDeadline(t time.Time) error {
	s.set(&s.wd, &s.wTimer, &s.writing, t)
	return nil
}

func (s *deadlineStream) set(deadline *time.Time, tm **time.Timer, pending *int, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*deadline = t
	s.arm(tm, t, pending)
}

// arm (re)sets the timer that resets the stream if an operation is still
// pending at t; s.mu held.
func (s *deadlineStream) arm(tm **time.Timer, t time.Time, pending *int) {
	if *tm != nil {
		(*tm).Stop()
		*tm = nil
	}
	if t.IsZero() {
		return
	}
	*tm = time.AfterFunc(time.Until(t), func() {
		s.mu.Lock()
		busy := *pending > 0
		s.mu.Unlock()
		if busy {
			_ = s.Stream.Reset()
		}
	})
}

func (s *deadlineStream) stopTimers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arm(&s.rTimer, time.Time{}, nil)
	s.arm(&s.wTimer, time.Time{}, nil)
}

func (s *deadlineStream) Close() error {
	s.stopTimers()
	return s.Stream.Close()
}

func (s *deadlineStream) Reset() error {
	s.stopTimers()
	return s.Stream.Reset()
}
