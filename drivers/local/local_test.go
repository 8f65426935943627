package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/drivertest"
)

// helperEnv makes the test binary act as a driver owner that starts the
// tasks of TestRecoverAfterOwnerKilled and then hangs until killed.
const helperEnv = "PCM_LOCAL_TEST_OWNER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(runOwner(dir))
	}
	os.Exit(m.Run())
}

func newTestDriver(t testing.TB, dir string) *Driver {
	t.Helper()
	cfg := Config{StateDir: dir, Capacity: drivers.Resources{CPUs: 2, MemoryMB: 4096, DiskMB: 1024}, Grace: drivers.Duration(2 * time.Second)}
	d, err := New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatalf("new local driver: %v", err)
	}
	return d
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func printExit(id, out string, code int) drivers.TaskSpec {
	return drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `printf '%s\n' "$1"; exit "$2"`, "sh", out, strconv.Itoa(code)}}
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		New:       func(t *testing.T, dir string) drivers.Driver { return newTestDriver(t, dir) },
		PrintExit: printExit,
		Sleep:     func(string) drivers.TaskSpec { return drivers.TaskSpec{Command: []string{"sleep", "600"}} },
		Caps:      drivertest.Caps{Recover: true, Timeout: true, Stream: true},
	})
}

// TestFeatures covers what only the local driver does: scripts, env, the
// work dir, resource limits and a missing program.
func TestFeatures(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	t.Cleanup(func() { d.Close() })
	tests := []struct {
		name  string
		spec  drivers.TaskSpec
		state drivers.State
		logs  string
	}{
		{"script", drivers.TaskSpec{Script: "echo from script\nexit 4\n"}, drivers.StateFailed, "from script"},
		{"shebang script", drivers.TaskSpec{Script: "#!/bin/sh\necho shebang $0\n"}, drivers.StateSucceeded, "shebang"},
		{"env", drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `echo "$GREETING $PCM_TASK_ID"`}, Env: map[string]string{"GREETING": "hi"}}, drivers.StateSucceeded, "hi env"},
		{"work dir", drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `pwd; echo data > f; cat f`}}, drivers.StateSucceeded, "/tasks/work-dir/work\ndata"},
		{"stderr captured", drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `echo oops >&2`}}, drivers.StateSucceeded, "oops"},
		{"missing program", drivers.TaskSpec{Command: []string{"no-such-program-pcm"}}, drivers.StateFailed, "not found"},
		{"memory limit", drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `ulimit -v`}, Resources: drivers.Resources{MemoryMB: 100}}, drivers.StateSucceeded, "102400"},
		{"cpu time limit", drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `ulimit -t`}, Resources: drivers.Resources{CPUs: 1}, Timeout: 30 * time.Second}, drivers.StateSucceeded, "31"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.ID = strings.ReplaceAll(tc.name, " ", "-")
			if _, err := d.Start(t.Context(), tc.spec); err != nil {
				t.Fatalf("start: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			st, err := d.Wait(ctx, tc.spec.ID)
			if err != nil {
				t.Fatalf("wait: %v", err)
			}
			b, _ := os.ReadFile(filepath.Join(d.cfg.StateDir, "tasks", tc.spec.ID, logFile))
			if st.State != tc.state || !strings.Contains(string(b), tc.logs) {
				t.Errorf("state %s (%s), logs %q; want %s with %q", st.State, st.Message, b, tc.state, tc.logs)
			}
		})
	}
}

// TestStopKillsProcessGroup: a task that ignores SIGTERM and has a child
// is killed with its whole group after the grace period.
func TestStopKillsProcessGroup(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	t.Cleanup(func() { d.Close() })
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	spec := drivers.TaskSpec{ID: "stubborn", Command: []string{"/bin/sh", "-c", `trap '' TERM; sleep 600 & echo $! > "$1"; echo ready; wait`, "sh", pidFile}}
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("start: %v", err)
	}
	childPID := waitPIDFile(t, pidFile)
	if err := d.Stop(t.Context(), "stubborn", 100*time.Millisecond); err != nil {
		t.Fatalf("stop: %v", err)
	}
	st, _ := d.Status(t.Context(), "stubborn")
	if st.State != drivers.StateCancelled {
		t.Errorf("state %s, want cancelled", st.State)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(childPID, 0) == nil {
		if state, _, err := procStat(childPID); err == nil && state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived stop of its process group", childPID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitPIDFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runOwner is the helper process: start three tasks, print "started",
// then hang until the test SIGKILLs it.
func runOwner(dir string) int {
	d, err := New(Config{StateDir: dir, Capacity: drivers.Resources{CPUs: 2, MemoryMB: 1024}}, nil)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	gate := filepath.Join(dir, "gate")
	specs := []drivers.TaskSpec{
		{ID: "done-before", Command: []string{"/bin/sh", "-c", "echo early; exit 0"}},
		{ID: "ends-after", Command: []string{"/bin/sh", "-c", `echo before; while [ ! -e "$1" ]; do sleep 0.02; done; echo after; exit 7`, "sh", gate}},
		{ID: "keeps-running", Command: []string{"sleep", "600"}},
	}
	ctx := context.Background()
	for _, s := range specs {
		s.Resources = drivers.Resources{CPUs: 0.5, MemoryMB: 64}
		if _, err := d.Start(ctx, s); err != nil {
			fmt.Println("error:", err)
			return 1
		}
	}
	if _, err := d.Wait(ctx, "done-before"); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("started")
	select {}
}

// TestRecoverAfterOwnerKilled runs the driver's owner as a separate
// process, SIGKILLs it mid-task, and recovers on the same state dir.
func TestRecoverAfterOwnerKilled(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = testWriter{t}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "started\n" {
		t.Fatalf("owner said %q (%v)", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The owner is gone; release the task that was mid-way.
	if err := os.WriteFile(filepath.Join(dir, "gate"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	d := newTestDriver(t, dir)
	t.Cleanup(func() { d.Close() })
	got, err := d.Recover(t.Context())
	if err != nil {
		t.Fatalf("recover: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("recovered %d tasks, want 3: %+v", len(got), got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	want := map[string]struct {
		state drivers.State
		code  int
		logs  string
	}{
		"done-before": {drivers.StateSucceeded, 0, "early\n"},
		"ends-after":  {drivers.StateFailed, 7, "before\nafter\n"},
	}
	for id, w := range want {
		st, err := d.Wait(ctx, id)
		if err != nil {
			t.Fatalf("wait %s: %v", id, err)
		}
		if st.State != w.state || st.ExitCode != w.code {
			t.Errorf("%s: %s exit %d (%s), want %s exit %d", id, st.State, st.ExitCode, st.Message, w.state, w.code)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "tasks", id, logFile)); string(b) != w.logs {
			t.Errorf("%s logs %q, want %q", id, b, w.logs)
		}
	}
	st, err := d.Status(ctx, "keeps-running")
	if err != nil || st.State != drivers.StateRunning {
		t.Fatalf("keeps-running: %+v %v, want running", st, err)
	}
	if fp, _ := d.Fingerprint(ctx); fp.Free.CPUs != 1.5 {
		t.Errorf("free cpus %g after recover, want 1.5 (one task still running)", fp.Free.CPUs)
	}
	if err := d.Stop(ctx, "keeps-running", time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if st, _ := d.Status(ctx, "keeps-running"); st.State != drivers.StateCancelled {
		t.Errorf("keeps-running after stop: %s, want cancelled", st.State)
	}
}

// TestPIDReuseNotMistaken: a record whose pid now belongs to another
// process (different start time) is reported ended, not running.
func TestPIDReuseNotMistaken(t *testing.T) {
	dir := t.TempDir()
	tdir := taskDir(dir, "reused")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, start, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rec := record{
		Spec:     drivers.TaskSpec{ID: "reused", Command: []string{"true"}},
		Status:   drivers.Status{ID: "reused", State: drivers.StateRunning, StartedAt: time.Now()},
		PID:      os.Getpid(), // alive, but not the task
		PIDStart: start + 1,
	}
	if err := writeRecord(tdir, &rec); err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, dir)
	t.Cleanup(func() { d.Close() })
	if _, err := d.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := d.Wait(ctx, "reused")
	if err != nil || st.State != drivers.StateFailed || st.ExitCode != -1 {
		t.Errorf("status %+v (%v), want failed with exit -1", st, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no state dir", Config{}, "state_dir"},
		{"negative cpus", Config{StateDir: "/tmp", Capacity: drivers.Resources{CPUs: -1}}, "capacity"},
		{"bad shell", Config{StateDir: "/tmp", Shell: "/no/such/sh"}, "shell"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.applyDefaults()
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if err := DefaultConfig(t.TempDir()).Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// BenchmarkLocalTrue starts and waits for b.N trivial tasks (`true`),
// eight at a time; ns/op is the per-task cost including fork/exec, the
// three record writes and reaping.
func BenchmarkLocalTrue(b *testing.B) {
	d := newTestDriver(b, b.TempDir())
	b.Cleanup(func() { d.Close() })
	ctx := context.Background()
	const window = 8
	ids := make(chan string, window)
	b.ResetTimer()
	go func() {
		for i := range b.N {
			id := "t" + strconv.Itoa(i)
			_, err := d.Start(ctx, drivers.TaskSpec{ID: id, Command: []string{"true"}, Resources: drivers.Resources{CPUs: 0.1, MemoryMB: 16}})
			if errors.Is(err, drivers.ErrCapacity) {
				panic("benchmark exceeded capacity")
			}
			if err != nil {
				panic(err)
			}
			ids <- id
		}
		close(ids)
	}()
	for id := range ids {
		if st, err := d.Wait(ctx, id); err != nil || st.State != drivers.StateSucceeded {
			b.Fatalf("%s: %+v %v", id, st, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkForkExecTrue is the baseline for BenchmarkLocalTrue: the same
// wrapper shell and `true`, run with os/exec and no driver, eight at a
// time. The difference is the driver's overhead per task.
func BenchmarkForkExecTrue(b *testing.B) {
	sem := make(chan struct{}, 8)
	errs := make(chan error, 8)
	for range b.N {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := exec.Command("/bin/sh", "-c", wrapper, "pcm-task", filepath.Join(b.TempDir(), "exitcode"), "true").Run(); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// TestTerminateBeforePID: a Stop that arrives while the process is being
// started records the intent and signals nothing (kill(-0) would hit the
// agent's own process group).
func TestTerminateBeforePID(t *testing.T) {
	h := &handle{}
	h.terminate(stopCancel, time.Second)
	if !h.termAt.IsZero() || h.rec.Stopping != stopCancel || h.startGrace != time.Second {
		t.Errorf("handle after early terminate: %+v", h)
	}
}
