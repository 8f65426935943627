package drivertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Run runs the conformance suite against the driver h builds.
func Run(t *testing.T, h Harness) {
	h.defaults()
	tests := []struct {
		name string
		run  func(t *testing.T, h *Harness)
		skip bool
	}{
		{"Fingerprint", testFingerprint, false},
		{"ExitCodesAndLogs", testExitCodesAndLogs, false},
		{"LogsFollow", testLogsFollow, false},
		{"LogsStreamWhileRunning", testLogsStream, !h.Caps.Stream},
		{"DuplicateID", testDuplicateID, false},
		{"UnknownTask", testUnknownTask, false},
		{"StopLongTask", testStop, false},
		{"Capacity", testCapacity, false},
		{"BadSpecs", testBadSpecs, false},
		{"Concurrent", testConcurrent, false},
		{"Timeout", testTimeout, !h.Caps.Timeout},
		{"Recover", testRecover, !h.Caps.Recover},
		{"Events", testEvents, false},
		{"Files", testFiles, false},
		{"Close", testClose, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("driver does not declare this capability")
			}
			tc.run(t, &h)
		})
	}
}

func testFingerprint(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	if d.Name() == "" || fp.Driver != d.Name() {
		t.Errorf("fingerprint driver %q, Name() %q: want equal and non-empty", fp.Driver, d.Name())
	}
	if fp.Total.CPUs <= 0 || fp.Total.MemoryMB <= 0 {
		t.Errorf("total %+v: want cpus and memory > 0", fp.Total)
	}
	if fp.Free != fp.Total {
		t.Errorf("fresh driver: free %+v != total %+v", fp.Free, fp.Total)
	}
	if len(fp.Kinds) == 0 {
		t.Errorf("fingerprint lists no task kinds")
	}
}

func testExitCodesAndLogs(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	for _, tc := range []struct {
		code  int
		state drivers.State
	}{{0, drivers.StateSucceeded}, {3, drivers.StateFailed}, {1, drivers.StateFailed}} {
		id := fmt.Sprintf("exit-%d", tc.code)
		out := "hello from " + id
		st, err := d.Start(t.Context(), h.printExit(id, out, tc.code))
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		if st.ID != id || st.State.Final() && st.State != tc.state {
			t.Errorf("start %s returned %+v", id, st)
		}
		st = h.waitFinal(t, d, id)
		if st.State != tc.state || st.ExitCode != tc.code {
			t.Errorf("%s: got state %s exit %d (%s), want %s exit %d", id, st.State, st.ExitCode, st.Message, tc.state, tc.code)
		}
		again, err := d.Status(t.Context(), id)
		if err != nil || again.State != st.State || again.ExitCode != st.ExitCode {
			t.Errorf("status after wait: %+v, %v; want %s", again, err, st.State)
		}
		if h.Caps.NoLogs {
			logsUnavailable(t, d, id, drivers.LogOptions{})
			continue
		}
		logs := readLogs(t, d, id, 0)
		i := strings.Index(logs, out)
		if i < 0 {
			t.Fatalf("%s logs %q do not contain %q", id, logs, out)
		}
		if tail := readLogs(t, d, id, int64(i)); !strings.HasPrefix(tail, out) || tail != logs[i:] {
			t.Errorf("%s logs from offset %d = %q, want %q", id, i, tail, logs[i:])
		}
		if past := readLogs(t, d, id, int64(len(logs))); past != "" {
			t.Errorf("%s logs past the end = %q, want empty", id, past)
		}
	}
}

func testLogsFollow(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	id, out := "follow", "followed output"
	if _, err := d.Start(t.Context(), h.printExit(id, out, 0)); err != nil {
		t.Fatalf("start: %v", err)
	}
	if h.Caps.NoLogs {
		logsUnavailable(t, d, id, drivers.LogOptions{Follow: true})
		h.waitFinal(t, d, id)
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), h.d(10*time.Second))
	defer cancel()
	rc, err := d.Logs(ctx, id, drivers.LogOptions{Follow: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("follow must end with EOF when the task ends: %v", err)
	}
	if !strings.Contains(string(b), out) {
		t.Errorf("followed logs %q do not contain %q", b, out)
	}
	if st, err := d.Status(t.Context(), id); err != nil || !st.State.Final() {
		t.Errorf("follow ended before the task did: %+v %v", st, err)
	}
}

func testLogsStream(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	id := "stream"
	spec := h.sleep(id)
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), id, 0) })
	h.waitRunning(t, d, id)
	if h.Caps.NoLogs {
		logsUnavailable(t, d, id, drivers.LogOptions{Follow: true})
		return
	}
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := d.Logs(ctx, id, drivers.LogOptions{Follow: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(rc); done <- err }()
	cancel()
	select {
	case <-done:
	case <-time.After(h.d(10 * time.Second)):
		t.Fatalf("follow of a running task did not end when its context was cancelled")
	}
	rc.Close()
}

func testDuplicateID(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	if _, err := d.Start(t.Context(), h.printExit("dup", "one", 0)); err != nil {
		t.Fatalf("start: %v", err)
	}
	_, err := d.Start(t.Context(), h.printExit("dup", "two", 0))
	if !errors.Is(err, drivers.ErrExists) {
		t.Errorf("second start with the same id: %v, want ErrExists", err)
	}
	h.waitFinal(t, d, "dup")
	_, err = d.Start(t.Context(), h.printExit("dup", "three", 0))
	if !errors.Is(err, drivers.ErrExists) {
		t.Errorf("start with the id of a finished task: %v, want ErrExists", err)
	}
}

func testUnknownTask(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	ctx := t.Context()
	checks := map[string]error{}
	_, checks["status"] = d.Status(ctx, "nope")
	_, checks["wait"] = d.Wait(ctx, "nope")
	_, checks["logs"] = d.Logs(ctx, "nope", drivers.LogOptions{})
	checks["stop"] = d.Stop(ctx, "nope", time.Second)
	for op, err := range checks {
		if !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("%s of an unknown task: %v, want ErrNotFound", op, err)
		}
	}
}

func testStop(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	id := "long"
	if _, err := d.Start(t.Context(), h.sleep(id)); err != nil {
		t.Fatalf("start: %v", err)
	}
	h.waitRunning(t, d, id)
	if err := d.Stop(t.Context(), id, h.d(2*time.Second)); err != nil {
		t.Fatalf("stop: %v", err)
	}
	st := h.waitFinal(t, d, id)
	if st.State != drivers.StateCancelled {
		t.Errorf("stopped task: state %s (%s), want cancelled", st.State, st.Message)
	}
	if err := d.Stop(t.Context(), id, time.Second); err != nil {
		t.Errorf("stopping a finished task must be a no-op, got %v", err)
	}
	if st2, _ := d.Status(t.Context(), id); st2.State != drivers.StateCancelled {
		t.Errorf("state after second stop: %s, want cancelled", st2.State)
	}
}

func testCapacity(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	big := h.sleep("big")
	big.Resources = drivers.Resources{CPUs: fp.Total.CPUs, MemoryMB: h.Small.MemoryMB}
	if _, err := d.Start(t.Context(), big); err != nil {
		t.Fatalf("start a task using every cpu: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), "big", 0) })
	fp2, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	if fp2.Free.CPUs != 0 || fp2.Free.MemoryMB != fp.Total.MemoryMB-h.Small.MemoryMB {
		t.Errorf("free after admitting every cpu: %+v", fp2.Free)
	}
	_, err = d.Start(t.Context(), h.printExit("over", "x", 0))
	if !errors.Is(err, drivers.ErrCapacity) {
		t.Fatalf("start beyond capacity: %v, want ErrCapacity", err)
	}
	if _, err := d.Status(t.Context(), "over"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("a refused task must not be recorded: status %v", err)
	}
	if err := d.Stop(t.Context(), "big", h.d(2*time.Second)); err != nil {
		t.Fatalf("stop: %v", err)
	}
	h.waitFinal(t, d, "big")
	h.eventually(t, 10*time.Second, "capacity released", func() error {
		fp3, err := d.Fingerprint(t.Context())
		if err != nil {
			return err
		}
		if fp3.Free != fp.Total {
			return fmt.Errorf("free %+v, total %+v", fp3.Free, fp.Total)
		}
		return nil
	})
	if _, err := d.Start(t.Context(), h.printExit("after", "x", 0)); err != nil {
		t.Errorf("start after capacity was released: %v", err)
	}
	h.waitFinal(t, d, "after")
}

func testBadSpecs(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	tests := []struct {
		name string
		edit func(s *drivers.TaskSpec)
		want error
	}{
		{"negative cpus", func(s *drivers.TaskSpec) { s.Resources.CPUs = -1 }, drivers.ErrInvalidSpec},
		{"negative memory", func(s *drivers.TaskSpec) { s.Resources.MemoryMB = -5 }, drivers.ErrInvalidSpec},
		{"memory beyond capacity", func(s *drivers.TaskSpec) { s.Resources.MemoryMB = fp.Total.MemoryMB + 1 }, drivers.ErrCapacity},
		{"cpus beyond capacity", func(s *drivers.TaskSpec) { s.Resources.CPUs = fp.Total.CPUs + 1 }, drivers.ErrCapacity},
		{"missing command", func(s *drivers.TaskSpec) { s.Command, s.Script, s.Image = nil, "", "" }, drivers.ErrInvalidSpec},
		{"empty id", func(s *drivers.TaskSpec) { s.ID = "" }, drivers.ErrInvalidSpec},
		{"path in id", func(s *drivers.TaskSpec) { s.ID = "../escape" }, drivers.ErrInvalidSpec},
		{"negative timeout", func(s *drivers.TaskSpec) { s.Timeout = -time.Second }, drivers.ErrInvalidSpec},
		{"unknown option", func(s *drivers.TaskSpec) { s.Options = map[string]string{"no-such-option": "1"} }, drivers.ErrInvalidSpec},
		{"bad env name", func(s *drivers.TaskSpec) { s.Env = map[string]string{"A=B": "x"} }, drivers.ErrInvalidSpec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := h.printExit("bad", "must not run", 0)
			tc.edit(&spec)
			_, err := d.Start(t.Context(), spec)
			if !errors.Is(err, tc.want) {
				t.Fatalf("start: %v, want %v", err, tc.want)
			}
			if msg := err.Error(); len(msg) < len(tc.want.Error())+10 {
				t.Errorf("error %q does not say what is wrong", msg)
			}
			if _, err := d.Status(t.Context(), spec.ID); !errors.Is(err, drivers.ErrNotFound) {
				t.Errorf("refused spec was recorded: status %v", err)
			}
			fp2, err := d.Fingerprint(t.Context())
			if err != nil || fp2.Free != fp.Total {
				t.Errorf("refused spec changed free capacity: %+v (%v)", fp2.Free, err)
			}
		})
	}
}

func testConcurrent(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			if _, err := d.Start(t.Context(), h.printExit(id, id+"-out", i%2)); err != nil {
				errs <- fmt.Errorf("start %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		st := h.waitFinal(t, d, id)
		if st.ExitCode != i%2 {
			t.Errorf("%s exit %d, want %d", id, st.ExitCode, i%2)
		}
		if h.Caps.NoLogs {
			logsUnavailable(t, d, id, drivers.LogOptions{})
		} else if logs := readLogs(t, d, id, 0); !strings.Contains(logs, id+"-out") {
			t.Errorf("%s logs %q", id, logs)
		}
	}
}

func testTimeout(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	spec := h.sleep("timeout")
	spec.Timeout = 200 * time.Millisecond
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("start: %v", err)
	}
	st := h.waitFinal(t, d, "timeout")
	if st.State != drivers.StateFailed || !strings.Contains(st.Message, "timeout") {
		t.Errorf("timed out task: state %s message %q, want failed with a message naming the timeout", st.State, st.Message)
	}
}

func testRecover(t *testing.T, h *Harness) {
	dir := t.TempDir()
	d1 := h.newDriver(t, dir)
	if _, err := d1.Start(t.Context(), h.printExit("short", "before restart", 3)); err != nil {
		t.Fatalf("start short: %v", err)
	}
	if _, err := d1.Start(t.Context(), h.sleep("long")); err != nil {
		t.Fatalf("start long: %v", err)
	}
	h.waitRunning(t, d1, "long")
	if err := d1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	d2 := h.newDriver(t, dir)
	got, err := d2.Recover(t.Context())
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	seen := map[string]bool{}
	for _, st := range got {
		seen[st.ID] = true
	}
	if !seen["short"] || !seen["long"] {
		t.Fatalf("recover returned %+v, want tasks short and long", got)
	}
	st := h.waitFinal(t, d2, "short")
	if st.State != drivers.StateFailed || st.ExitCode != 3 {
		t.Errorf("recovered short task: %s exit %d (%s), want failed exit 3", st.State, st.ExitCode, st.Message)
	}
	if h.Caps.NoLogs {
		logsUnavailable(t, d2, "short", drivers.LogOptions{})
	} else if logs := readLogs(t, d2, "short", 0); !strings.Contains(logs, "before restart") {
		t.Errorf("recovered logs %q lost the output", logs)
	}
	h.waitRunning(t, d2, "long")
	fp, err := d2.Fingerprint(t.Context())
	if err != nil {
		t.Fatalf("fingerprint: %v", err)
	}
	if fp.Free.MemoryMB != fp.Total.MemoryMB-h.Small.MemoryMB {
		t.Errorf("recovered running task is not accounted: free %+v total %+v", fp.Free, fp.Total)
	}
	if _, err := d2.Start(t.Context(), h.printExit("long", "x", 0)); !errors.Is(err, drivers.ErrExists) {
		t.Errorf("start with a recovered id: %v, want ErrExists", err)
	}
	if err := d2.Stop(t.Context(), "long", h.d(2*time.Second)); err != nil {
		t.Fatalf("stop recovered task: %v", err)
	}
	if st := h.waitFinal(t, d2, "long"); st.State != drivers.StateCancelled {
		t.Errorf("stopped recovered task: %s, want cancelled", st.State)
	}
}

func testEvents(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	obs, ok := d.(drivers.Observable)
	if !ok {
		t.Skip("driver is not Observable")
	}
	var mu sync.Mutex
	var states []drivers.State
	obs.Observe(func(ev drivers.Event) {
		if ev.TaskID != "ev" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ev.Resources != h.Small {
			t.Errorf("event %s carries resources %+v, want %+v", ev.State, ev.Resources, h.Small)
		}
		states = append(states, ev.State)
	})
	if _, err := d.Start(t.Context(), h.printExit("ev", "x", 0)); err != nil {
		t.Fatalf("start: %v", err)
	}
	h.waitFinal(t, d, "ev")
	h.eventually(t, 5*time.Second, "final event", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 || states[len(states)-1] != drivers.StateSucceeded {
			return fmt.Errorf("events %v", states)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if states[0] != drivers.StatePending && states[0] != drivers.StateRunning {
		t.Errorf("first event %s, want pending or running", states[0])
	}
	for i, s := range states[:len(states)-1] {
		if s.Final() {
			t.Errorf("event %d is final (%s) but more followed: %v", i, s, states)
		}
	}
}

func testClose(t *testing.T, h *Harness) {
	d := h.New(t, t.TempDir())
	if _, err := d.Start(t.Context(), h.printExit("c", "x", 0)); err != nil {
		t.Fatalf("start: %v", err)
	}
	h.waitFinal(t, d, "c")
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := d.Start(t.Context(), h.printExit("c2", "x", 0)); !errors.Is(err, drivers.ErrClosed) {
		t.Errorf("start after close: %v, want ErrClosed", err)
	}
}
