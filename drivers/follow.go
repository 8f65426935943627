package drivers

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"
)

// Shared pieces of the drivers' Wait, Recover and Logs: polling a task
// until it is final, waiting on a task's done channel, collecting every
// task's status, and following a task's growing output.

// PollUntilFinal calls status every interval until the task is final, an
// error occurs or ctx ends (drivers that learn a task's state by asking
// their back end: slurm, kubernetes).
func PollUntilFinal(ctx context.Context, interval time.Duration, status func(context.Context) (Status, error)) (Status, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		st, err := status(ctx)
		if err != nil || st.State.Final() {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// WaitDone blocks until done is closed (the task ended), ctx ends or
// closed is closed (the driver closed: ErrClosed), for drivers that are
// told when a task ends (local, sim, exec).
func WaitDone(ctx context.Context, done, closed <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return ErrClosed
	}
}

// StatusesOf returns status(id) for every id, sorted by id (Recover).
func StatusesOf(ctx context.Context, ids []string, status func(context.Context, string) (Status, error)) ([]Status, error) {
	ids = append([]string(nil), ids...)
	sort.Strings(ids)
	out := make([]Status, 0, len(ids))
	for _, id := range ids {
		st, err := status(ctx, id)
		if err != nil {
			return out, fmt.Errorf("recover task %q: %w", id, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// Follower is the io.ReadCloser of Logs: it reads a task's output with
// Next and, when following, waits at the current end until more comes or
// the task ends, then drains what is left and returns io.EOF.
type Follower struct {
	Ctx context.Context
	// Next reads from the output's current position; it returns 0,
	// io.EOF when nothing more is there yet.
	Next func(p []byte) (int, error)
	// Follow keeps reading until the task ends; without it the first end
	// of the output is the end.
	Follow bool
	// Ended reports whether the task has ended (no more output will
	// come). Nil when Done tells it.
	Ended func(context.Context) (bool, error)
	// Done, when set, is closed when the task ends.
	Done <-chan struct{}
	// Closed, when set, is closed when the driver closes (ErrClosed).
	Closed <-chan struct{}
	// Poll is how long to wait at the end before looking again.
	Poll time.Duration
	// OnClose releases the source (may be nil).
	OnClose func() error

	ended     bool
	closeOnce sync.Once
	closeErr  error
	closing   chan struct{}
	initOnce  sync.Once
}

var _ io.ReadCloser = (*Follower)(nil)

func (f *Follower) init() { f.initOnce.Do(func() { f.closing = make(chan struct{}) }) }

// Read implements io.Reader.
func (f *Follower) Read(p []byte) (int, error) {
	f.init()
	for {
		select {
		case <-f.closing:
			return 0, os.ErrClosed
		default:
		}
		n, err := f.Next(p)
		if n > 0 || err != io.EOF {
			return n, err
		}
		if !f.Follow || f.ended {
			return 0, io.EOF
		}
		if f.Ended != nil {
			ended, err := f.Ended(f.Ctx)
			if err != nil {
				return 0, err
			}
			if ended {
				f.ended = true // read once more, then stop
				continue
			}
		}
		if err := f.pause(); err != nil {
			return 0, err
		}
	}
}

// pause waits Poll, or less when the task ends; it returns the error
// that ends the reading (context, driver or reader closed).
func (f *Follower) pause() error {
	t := time.NewTimer(f.Poll)
	defer t.Stop()
	select {
	case <-f.Done: // nil when unset: never ready
		f.ended = true
	case <-f.Ctx.Done():
		return f.Ctx.Err()
	case <-f.Closed:
		return ErrClosed
	case <-f.closing:
		return os.ErrClosed
	case <-t.C:
	}
	return nil
}

// Close ends the reader and releases its source; it is idempotent.
func (f *Follower) Close() error {
	f.init()
	f.closeOnce.Do(func() {
		close(f.closing)
		if f.OnClose != nil {
			f.closeErr = f.OnClose()
		}
	})
	return f.closeErr
}
