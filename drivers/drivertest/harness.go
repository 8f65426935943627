package drivertest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Harness adapts one driver to the suite.
type Harness struct {
	// New returns a fresh driver on stateDir. The suite calls it again on
	// the same dir to test Recover, and closes every driver it gets.
	New func(t *testing.T, stateDir string) drivers.Driver
	// PrintExit returns a spec that writes out (followed by a newline) to
	// its output and exits with code. The suite sets ID and Resources.
	PrintExit func(id, out string, code int) drivers.TaskSpec
	// Sleep returns a spec that runs until stopped (at least ten minutes).
	// The suite sets ID and Resources.
	Sleep func(id string) drivers.TaskSpec
	// Small is the resources of an ordinary test task; default 0.1 CPU and
	// 64 MB (back ends that count whole cores may set CPUs to 1).
	Small drivers.Resources
	// TimeoutScale multiplies every deadline the suite waits on; default 1
	// (base deadlines are 10 s for a task to finish).
	TimeoutScale float64
	// Caps says which optional behaviours the driver has.
	Caps Caps
}

// Caps lists optional driver behaviours the suite checks only when set.
type Caps struct {
	// Recover: a new driver on the same state dir finds earlier tasks.
	Recover bool
	// Timeout: TaskSpec.Timeout ends a task as failed.
	Timeout bool
	// Stream: with LogOptions.Follow, output written while a task runs is
	// readable before it ends (false for back ends, like sim, whose
	// output appears only when the task ends).
	Stream bool
	// NoLogs: the back end keeps no task output (Kubernetes nodes simulated
	// by kwok run no containers). The suite then checks that Logs fails
	// with drivers.ErrLogsUnavailable and a message, instead of reading
	// output; everything else is checked as usual.
	NoLogs bool
}

func (h *Harness) defaults() {
	if h.TimeoutScale <= 0 {
		h.TimeoutScale = 1
	}
	if h.Small == (drivers.Resources{}) {
		h.Small = drivers.Resources{CPUs: 0.1, MemoryMB: 64}
	}
}

func (h *Harness) d(base time.Duration) time.Duration {
	return time.Duration(float64(base) * h.TimeoutScale)
}

// newDriver builds a driver and closes it when the test ends.
func (h *Harness) newDriver(t *testing.T, dir string) drivers.Driver {
	t.Helper()
	d := h.New(t, dir)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close %s driver: %v", d.Name(), err)
		}
	})
	return d
}

func (h *Harness) printExit(id, out string, code int) drivers.TaskSpec {
	s := h.PrintExit(id, out, code)
	s.ID, s.Resources = id, h.Small
	return s
}

func (h *Harness) sleep(id string) drivers.TaskSpec {
	s := h.Sleep(id)
	s.ID, s.Resources = id, h.Small
	return s
}

// waitFinal waits (with the scaled deadline) for id to end.
func (h *Harness) waitFinal(t *testing.T, d drivers.Driver, id string) drivers.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), h.d(10*time.Second))
	defer cancel()
	st, err := d.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	if !st.State.Final() {
		t.Fatalf("wait %s returned non-final state %q", id, st.State)
	}
	return st
}

// eventually polls cond until it returns nil or the scaled deadline passes.
func (h *Harness) eventually(t *testing.T, base time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(h.d(base))
	tick := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %v", what, h.d(base), err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(tick):
		}
		tick = min(tick*2, 100*time.Millisecond)
	}
}

// waitRunning waits until id is running (it may be pending for a while).
func (h *Harness) waitRunning(t *testing.T, d drivers.Driver, id string) {
	t.Helper()
	h.eventually(t, 20*time.Second, "task "+id+" running", func() error {
		st, err := d.Status(t.Context(), id)
		if err != nil {
			return err
		}
		switch {
		case st.State == drivers.StateRunning:
			return nil
		case st.State.Final():
			t.Fatalf("task %s ended (%s, exit %d: %s) instead of running", id, st.State, st.ExitCode, st.Message)
		}
		return errors.New("state " + string(st.State))
	})
}

// logsUnavailable checks that Logs of id fails with ErrLogsUnavailable and
// says why (for back ends with Caps.NoLogs).
func logsUnavailable(t *testing.T, d drivers.Driver, id string, opts drivers.LogOptions) {
	t.Helper()
	rc, err := d.Logs(t.Context(), id, opts)
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		t.Fatalf("logs %s: got %q, want ErrLogsUnavailable (Caps.NoLogs)", id, b)
	}
	if !errors.Is(err, drivers.ErrLogsUnavailable) || len(err.Error()) < len(drivers.ErrLogsUnavailable.Error())+20 {
		t.Fatalf("logs %s: %v; want ErrLogsUnavailable with a reason", id, err)
	}
}

// readLogs reads id's logs from offset without following.
func readLogs(t *testing.T, d drivers.Driver, id string, offset int64) string {
	t.Helper()
	rc, err := d.Logs(t.Context(), id, drivers.LogOptions{Offset: offset})
	if err != nil {
		t.Fatalf("logs %s: %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs %s: %v", id, err)
	}
	return string(b)
}
