package drivers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// A following reader returns what is written while the task runs, drains
// what was written before it ended, then io.EOF; Ended (polled) and Done
// (closed) both end it.
func TestFollowerFollowsUntilTheTaskEnds(t *testing.T) {
	for _, viaDone := range []bool{true, false} {
		var mu sync.Mutex
		var out bytes.Buffer
		var ended bool
		done := make(chan struct{})
		f := &Follower{
			Ctx: t.Context(), Follow: true, Poll: 5 * time.Millisecond,
			Next: func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Read(p) },
		}
		if viaDone {
			f.Done = done
		} else {
			f.Ended = func(context.Context) (bool, error) { mu.Lock(); defer mu.Unlock(); return ended, nil }
		}
		go func() {
			for _, s := range []string{"one ", "two ", "three"} {
				time.Sleep(10 * time.Millisecond)
				mu.Lock()
				out.WriteString(s)
				mu.Unlock()
			}
			mu.Lock()
			ended = true
			mu.Unlock()
			close(done)
		}()
		got, err := io.ReadAll(f)
		if err != nil || string(got) != "one two three" {
			t.Fatalf("viaDone=%v: %q, %v; want all of it", viaDone, got, err)
		}
	}
}

func TestFollowerStopsOnCloseAndDriverClose(t *testing.T) {
	closed := make(chan struct{})
	f := &Follower{Ctx: t.Context(), Follow: true, Poll: time.Hour, Closed: closed,
		Next: func([]byte) (int, error) { return 0, io.EOF }}
	go close(closed)
	if _, err := f.Read(make([]byte, 8)); !errors.Is(err, ErrClosed) {
		t.Fatalf("driver closed: %v, want ErrClosed", err)
	}
	released := 0
	g := &Follower{Ctx: t.Context(), Next: func([]byte) (int, error) { return 0, io.EOF }, OnClose: func() error { released++; return nil }}
	g.Close()
	g.Close()
	if _, err := g.Read(make([]byte, 8)); !errors.Is(err, os.ErrClosed) || released != 1 {
		t.Fatalf("after Close: %v, released %d times; want os.ErrClosed, once", err, released)
	}
}
