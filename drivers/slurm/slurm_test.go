package slurm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// requireSlurm skips the test when no Slurm cluster answers, or fails it
// when PCM_REQUIRE_SLURM=1 (as in CI, after testnet/slurm-up.sh).
func requireSlurm(t testing.TB) {
	t.Helper()
	out, err := exec.Command("scontrol", "ping").CombinedOutput()
	if err == nil && strings.Contains(string(out), "UP") {
		return
	}
	msg := fmt.Sprintf("no Slurm cluster (scontrol ping: %v %s); start one with `sudo bash testnet/slurm-up.sh`", err, strings.TrimSpace(string(out)))
	if os.Getenv("PCM_REQUIRE_SLURM") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// testLogger routes driver logs to t.Log so they show only on failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newDriver returns a driver on dir (a new temp dir when empty) that
// cancels its tasks when the test ends.
func newDriver(t testing.TB, dir string, mut func(*Config)) *Driver {
	t.Helper()
	requireSlurm(t)
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := Config{StateDir: dir, PollInterval: 50 * time.Millisecond}
	if mut != nil {
		mut(&cfg)
	}
	logger := testLogger(t)
	if _, isBench := t.(*testing.B); isBench {
		logger = slog.New(slog.DiscardHandler) // benchmarks print every b.Log
	}
	d, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancelJobsIn(t, dir) })
	t.Cleanup(func() { d.Close() })
	return d
}

// cancelJobsIn scancels every job recorded under a state dir, so a failed
// test leaves nothing running on the shared cluster.
func cancelJobsIn(t testing.TB, dir string) {
	recs, _ := store{dir: dir}.loadAll()
	for _, rec := range recs {
		if rec.JobID != "" && rec.Final == nil {
			exec.Command("scancel", rec.JobID).Run()
		}
	}
}

// uniqueID makes task ids unique across runs on the same cluster.
func uniqueID(t testing.TB, name string) string {
	return fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e9)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a wait for an event
	}
}

func waitState(t testing.TB, d *Driver, id string, want drivers.State) drivers.Status {
	t.Helper()
	var st drivers.Status
	waitFor(t, fmt.Sprintf("task %s to be %s", id, want), 60*time.Second, func() (bool, error) {
		var err error
		st, err = d.Status(t.Context(), id)
		if st.State.Final() && st.State != want {
			return false, fmt.Errorf("task ended %s (%s), want %s", st.State, st.Message, want)
		}
		return st.State == want, err
	})
	return st
}

func readLogs(t testing.TB, d drivers.Driver, id string) string {
	t.Helper()
	rc, err := d.Logs(t.Context(), id, drivers.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gated is a command that prints "started", waits for the file release
// to exist, then prints "done".
func gated(release string) []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf(`echo started; echo "to stderr" >&2; while [ ! -e %s ]; do sleep 0.1; done; echo done`, release)}
}

func scontrolJob(t testing.TB, jobID string) map[string]string {
	t.Helper()
	out, err := exec.Command("scontrol", "show", "job", jobID, "--oneliner").CombinedOutput()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v %s", jobID, err, out)
	}
	return parseOneliner(string(out))
}

// TestSlurmSeesTask checks the task through Slurm's own tools: the job has
// the requested CPUs and memory, squeue lists it while it runs, its output
// comes back through Logs and it ends COMPLETED.
func TestSlurmSeesTask(t *testing.T) {
	d := newDriver(t, "", nil)
	release := filepath.Join(t.TempDir(), "release")
	id := uniqueID(t, "seen")
	st, err := d.Start(t.Context(), drivers.TaskSpec{
		ID: id, Resources: drivers.Resources{CPUs: 2, MemoryMB: 300},
		Command: gated(release), Env: map[string]string{"PCM_X": "y"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.NativeID == "" {
		t.Fatal("Start returned no slurm job id")
	}
	waitState(t, d, id, drivers.StateRunning)

	job := scontrolJob(t, st.NativeID)
	for k, want := range map[string]string{
		"JobName": "pcm-" + id, "JobState": "RUNNING", "NumCPUs": "2", "CPUs/Task": "2",
		"MinMemoryNode": "300M", "Partition": "debug",
	} {
		if job[k] != want {
			t.Errorf("scontrol %s = %q, want %q", k, job[k], want)
		}
	}
	out, err := exec.Command("squeue", "-h", "-j", st.NativeID, "-o", "%j|%T|%C|%m").CombinedOutput()
	if err != nil {
		t.Fatalf("squeue: %v %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "pcm-"+id+"|RUNNING|2|300M"; got != want {
		t.Errorf("squeue = %q, want %q", got, want)
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	final, err := d.Wait(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != drivers.StateSucceeded || final.ExitCode != 0 || final.StartedAt.IsZero() || final.FinishedAt.IsZero() {
		t.Errorf("final = %+v, want succeeded with times", final)
	}
	if got := scontrolJob(t, st.NativeID)["JobState"]; got != "COMPLETED" {
		t.Errorf("slurm JobState = %q, want COMPLETED", got)
	}
	if got, want := readLogs(t, d, id), "started\nto stderr\ndone\n"; got != want {
		t.Errorf("logs = %q, want %q", got, want)
	}
}

// TestStopEndsCancelled stops a running task: it ends cancelled, and
// Slurm says CANCELLED.
func TestStopEndsCancelled(t *testing.T) {
	d := newDriver(t, "", nil)
	id := uniqueID(t, "stop")
	st, err := d.Start(t.Context(), drivers.TaskSpec{ID: id, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64},
		Command: []string{"/bin/sh", "-c", "echo up; exec sleep 300"}})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, d, id, drivers.StateRunning)
	if err := d.Stop(t.Context(), id, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	got, err := d.Status(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != drivers.StateCancelled {
		t.Errorf("state after Stop = %s (%s), want cancelled", got.State, got.Message)
	}
	if s := scontrolJob(t, st.NativeID)["JobState"]; s != "CANCELLED" {
		t.Errorf("slurm JobState = %q, want CANCELLED", s)
	}
	if err := d.Stop(t.Context(), id, time.Second); err != nil {
		t.Errorf("stopping a finished task: %v", err)
	}
}

func TestExitCodesAndTimeout(t *testing.T) {
	d := newDriver(t, "", nil)
	for _, tc := range []struct {
		name    string
		spec    drivers.TaskSpec
		state   drivers.State
		code    int
		message string
	}{
		{"exit 3", drivers.TaskSpec{Command: []string{"/bin/sh", "-c", "exit 3"}}, drivers.StateFailed, 3, "exit code 3"},
		{"script", drivers.TaskSpec{Script: "test \"$GREETING\" = hi"}, drivers.StateSucceeded, 0, ""},
		{"timeout", drivers.TaskSpec{Command: []string{"sleep", "60"}, Timeout: time.Second}, drivers.StateFailed, 124, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.ID = uniqueID(t, "exit")
			spec.Resources = drivers.Resources{CPUs: 1, MemoryMB: 64}
			spec.Env = map[string]string{"GREETING": "hi"}
			if _, err := d.Start(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			st, err := d.Wait(t.Context(), spec.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.state || st.ExitCode != tc.code || !strings.Contains(st.Message, tc.message) {
				t.Errorf("status = %s code %d %q; want %s code %d %q", st.State, st.ExitCode, st.Message, tc.state, tc.code, tc.message)
			}
		})
	}
}

// TestBadSpecs checks that bad specs are refused before anything starts:
// no record, no Slurm job.
func TestBadSpecs(t *testing.T) {
	d := newDriver(t, "", nil)
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ok := drivers.Resources{CPUs: 1, MemoryMB: 64}
	for _, tc := range []struct {
		name string
		spec drivers.TaskSpec
		want error
		text string
	}{
		{"negative cpus", drivers.TaskSpec{Resources: drivers.Resources{CPUs: -1, MemoryMB: 64}, Command: []string{"true"}}, drivers.ErrInvalidSpec, "resources.cpus"},
		{"zero cpus", drivers.TaskSpec{Resources: drivers.Resources{MemoryMB: 64}, Command: []string{"true"}}, drivers.ErrInvalidSpec, "resources.cpus"},
		{"negative memory", drivers.TaskSpec{Resources: drivers.Resources{CPUs: 1, MemoryMB: -5}, Command: []string{"true"}}, drivers.ErrInvalidSpec, "resources.memory_mb"},
		{"memory beyond capacity", drivers.TaskSpec{Resources: drivers.Resources{CPUs: 1, MemoryMB: fp.Total.MemoryMB + 1}, Command: []string{"true"}}, drivers.ErrCapacity, "MB memory"},
		{"cpus beyond capacity", drivers.TaskSpec{Resources: drivers.Resources{CPUs: fp.Total.CPUs + 1, MemoryMB: 64}, Command: []string{"true"}}, drivers.ErrCapacity, "CPUs"},
		{"missing command", drivers.TaskSpec{Resources: ok}, drivers.ErrInvalidSpec, "set exactly one of command, script or image"},
		{"image", drivers.TaskSpec{Resources: ok, Image: "alpine"}, drivers.ErrInvalidSpec, "not image"},
		{"unknown partition", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Options: map[string]string{"partition": "nope"}}, drivers.ErrInvalidSpec, `options.partition "nope" is unknown; known: debug`},
		{"unknown option", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Options: map[string]string{"namespace": "x"}}, drivers.ErrInvalidSpec, `option "namespace" is unknown`},
		{"bad env key", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Env: map[string]string{"A B": "x"}}, drivers.ErrInvalidSpec, "env key"},
		{"negative timeout", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Timeout: -time.Second}, drivers.ErrInvalidSpec, "timeout"},
		{"gpus beyond capacity", drivers.TaskSpec{Resources: drivers.Resources{CPUs: 1, MemoryMB: 64, GPUs: 1}, Command: []string{"true"}}, drivers.ErrCapacity, "GPUs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.ID = uniqueID(t, "bad")
			_, err := d.Start(t.Context(), tc.spec)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Start: %v; want %v mentioning %q", err, tc.want, tc.text)
			}
			if _, err := os.Stat(d.store.taskDir(tc.spec.ID)); !os.IsNotExist(err) {
				t.Errorf("refused task left a directory: %v", err)
			}
			out, err := exec.Command("squeue", "-h", "-t", "all", "--name=pcm-"+tc.spec.ID).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("refused task reached slurm: %v %q", err, out)
			}
		})
	}
	t.Run("bad id", func(t *testing.T) {
		_, err := d.Start(t.Context(), drivers.TaskSpec{ID: "../x", Resources: ok, Command: []string{"true"}})
		if !errors.Is(err, drivers.ErrInvalidSpec) {
			t.Errorf("Start: %v; want ErrInvalidSpec", err)
		}
	})
}

// TestCapacity checks that the driver admits at most its (capped) total,
// that Free tracks admitted tasks and that capacity comes back when a task ends.
func TestCapacity(t *testing.T) {
	d := newDriver(t, "", func(c *Config) { c.MaxCPUs = 1; c.MaxMemoryMB = 1000 })
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fp.Total.CPUs != 1 || fp.Total.MemoryMB != 1000 || fp.Free != fp.Total {
		t.Fatalf("fingerprint = %+v, want total 1 CPU 1000 MB, all free", fp)
	}
	release := filepath.Join(t.TempDir(), "release")
	first := uniqueID(t, "cap1")
	if _, err := d.Start(t.Context(), drivers.TaskSpec{ID: first, Resources: drivers.Resources{CPUs: 1, MemoryMB: 100}, Command: gated(release)}); err != nil {
		t.Fatal(err)
	}
	fp, err = d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fp.Free.CPUs != 0 || fp.Free.MemoryMB != 900 {
		t.Errorf("free after one task = %+v, want 0 CPUs 900 MB", fp.Free)
	}
	second := uniqueID(t, "cap2")
	spec := drivers.TaskSpec{ID: second, Resources: drivers.Resources{CPUs: 1, MemoryMB: 100}, Command: []string{"true"}}
	if _, err := d.Start(t.Context(), spec); !errors.Is(err, drivers.ErrCapacity) {
		t.Fatalf("second Start: %v, want ErrCapacity", err)
	}
	if _, err := d.Start(t.Context(), drivers.TaskSpec{ID: first, Resources: drivers.Resources{CPUs: 0.5}, Command: []string{"true"}}); !errors.Is(err, drivers.ErrExists) {
		t.Errorf("duplicate id: %v, want ErrExists", err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Wait(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("Start after the first task ended: %v", err)
	}
	if st, err := d.Wait(t.Context(), second); err != nil || st.State != drivers.StateSucceeded {
		t.Fatalf("second task: %+v %v", st, err)
	}
}

// TestRecoverAfterDrop drops a driver mid-task (Close, as an agent restart
// would) and recovers the task from a new driver on the same state dir.
func TestRecoverAfterDrop(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(t.TempDir(), "release")
	first := newDriver(t, dir, nil)
	id := uniqueID(t, "rec")
	if _, err := first.Start(t.Context(), drivers.TaskSpec{ID: id, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}, Command: gated(release)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, first, id, drivers.StateRunning)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Status(t.Context(), id); !errors.Is(err, drivers.ErrClosed) {
		t.Errorf("Status on a closed driver: %v, want ErrClosed", err)
	}
	checkRecovered(t, dir, id, release)
}

// TestRecoverAfterKill starts the task from a helper process, SIGKILLs it
// mid-task, and recovers from this process.
func TestRecoverAfterKill(t *testing.T) {
	requireSlurm(t)
	dir := t.TempDir()
	release := filepath.Join(t.TempDir(), "release")
	id := uniqueID(t, "kill")
	t.Cleanup(func() { cancelJobsIn(t, dir) })
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperStartAndHang$")
	cmd.Env = append(os.Environ(), "PCM_SLURM_HELPER=1", "PCM_SLURM_DIR="+dir, "PCM_SLURM_ID="+id, "PCM_SLURM_RELEASE="+release)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "running" {
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	checkRecovered(t, dir, id, release)
}

// TestHelperStartAndHang is the helper process of TestRecoverAfterKill.
func TestHelperStartAndHang(t *testing.T) {
	if os.Getenv("PCM_SLURM_HELPER") != "1" {
		t.Skip("helper process for TestRecoverAfterKill")
	}
	d, err := New(Config{StateDir: os.Getenv("PCM_SLURM_DIR"), PollInterval: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := os.Getenv("PCM_SLURM_ID")
	if _, err := d.Start(context.Background(), drivers.TaskSpec{ID: id, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}, Command: gated(os.Getenv("PCM_SLURM_RELEASE"))}); err != nil {
		t.Fatal(err)
	}
	waitState(t, d, id, drivers.StateRunning)
	fmt.Println("running")
	<-t.Context().Done() // hang until killed
}

func checkRecovered(t *testing.T, dir, id, release string) {
	t.Helper()
	second := newDriver(t, dir, nil)
	if _, err := second.Status(t.Context(), id); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("Status before Recover: %v, want ErrNotFound", err)
	}
	sts, err := second.Recover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || sts[0].ID != id || sts[0].State != drivers.StateRunning {
		t.Fatalf("Recover = %+v, want %s running", sts, id)
	}
	fp, err := second.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fp.Total.CPUs-fp.Free.CPUs != 1 {
		t.Errorf("recovered task holds %v CPUs, want 1", fp.Total.CPUs-fp.Free.CPUs)
	}
	rc, err := second.Logs(t.Context(), id, drivers.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "started\nto stderr\ndone\n"; got != want {
		t.Errorf("followed logs = %q, want %q", got, want)
	}
	st, err := second.Wait(t.Context(), id)
	if err != nil || st.State != drivers.StateSucceeded {
		t.Fatalf("final = %+v %v, want succeeded", st, err)
	}
	// A third driver finds the final status in the record.
	third := newDriver(t, dir, nil)
	sts, err = third.Recover(t.Context())
	if err != nil || len(sts) != 1 || sts[0].State != drivers.StateSucceeded {
		t.Fatalf("Recover after the end = %+v %v", sts, err)
	}
}

func TestLogsOffsetAndNotFound(t *testing.T) {
	d := newDriver(t, "", nil)
	id := uniqueID(t, "logs")
	if _, err := d.Start(t.Context(), drivers.TaskSpec{ID: id, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}, Command: []string{"printf", "0123456789"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Wait(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	rc, err := d.Logs(t.Context(), id, drivers.LogOptions{Offset: 4})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "456789" {
		t.Errorf("logs from offset 4 = %q", b)
	}
	for name, call := range map[string]func() error{
		"Status": func() error { _, err := d.Status(t.Context(), "nope"); return err },
		"Wait":   func() error { _, err := d.Wait(t.Context(), "nope"); return err },
		"Logs":   func() error { _, err := d.Logs(t.Context(), "nope", drivers.LogOptions{}); return err },
		"Stop":   func() error { return d.Stop(t.Context(), "nope", time.Second) },
	} {
		if err := call(); !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("%s of an unknown task: %v, want ErrNotFound", name, err)
		}
	}
}

// BenchmarkSubmitToRunning measures the time from Start to the job being
// RUNNING on the local cluster.
func BenchmarkSubmitToRunning(b *testing.B) {
	d := newDriver(b, "", nil)
	var lat []time.Duration
	for i := range b.N {
		id := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano()%1e9, i)
		start := time.Now()
		if _, err := d.Start(b.Context(), drivers.TaskSpec{ID: id, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}, Command: []string{"sleep", "30"}}); err != nil {
			b.Fatal(err)
		}
		waitState(b, d, id, drivers.StateRunning)
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err := d.Stop(b.Context(), id, time.Second); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
}
