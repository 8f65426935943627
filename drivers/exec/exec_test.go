package exec

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/drivertest"
)

func pluginPath(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "testnet", "examples", "plugins", "shell-driver.py")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("example plugin: %v", err)
	}
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newTestDriver(t testing.TB, dir string) *Driver {
	t.Helper()
	d, err := New(Config{
		Command:      []string{"python3", pluginPath(t)},
		StateDir:     dir,
		Config:       map[string]any{"cpus": 2, "memory_mb": 4096},
		PollInterval: drivers.Duration(20 * time.Millisecond),
	}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatalf("new exec driver: %v", err)
	}
	return d
}

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Harness{
		New: func(t *testing.T, dir string) drivers.Driver { return newTestDriver(t, dir) },
		PrintExit: func(id, out string, code int) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `printf '%s\n' "$1"; exit "$2"`, "sh", out, strconv.Itoa(code)}}
		},
		Sleep: func(string) drivers.TaskSpec { return drivers.TaskSpec{Command: []string{"sleep", "600"}} },
		Caps:  drivertest.Caps{Recover: true, Stream: true},
	})
}

// TestPluginCrash: a call in flight when the plugin dies fails with
// ErrPluginExited; the next call restarts the plugin, which still knows
// the task from its state dir.
func TestPluginCrash(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	t.Cleanup(func() { d.Close() })
	spec := drivers.TaskSpec{ID: "stubborn", Resources: drivers.Resources{CPUs: 1, MemoryMB: 64},
		Command: []string{"/bin/sh", "-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`}}
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("start: %v", err)
	}
	// Once the task prints, the wrapper has its trap and the task ignores
	// SIGTERM: the stop below can only end by the grace period.
	waitFor(t, func() bool {
		rc, err := d.Logs(t.Context(), "stubborn", drivers.LogOptions{})
		if err != nil {
			return false
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return strings.Contains(string(b), "ready")
	})
	d.procMu.Lock()
	p := d.proc
	d.procMu.Unlock()
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop(t.Context(), "stubborn", time.Hour) }()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.pending) > 0 })
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, ErrPluginExited) || !strings.Contains(err.Error(), "restarted on the next call") {
			t.Fatalf("stop during crash: %v, want ErrPluginExited saying it will be restarted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return when the plugin died")
	}
	st, err := d.Status(t.Context(), "stubborn")
	if err != nil || st.State != drivers.StateRunning {
		t.Fatalf("status after restart: %+v %v, want running", st, err)
	}
	if err := d.Stop(t.Context(), "stubborn", 50*time.Millisecond); err != nil {
		t.Fatalf("stop after restart: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if st, err := d.Wait(ctx, "stubborn"); err != nil || st.State != drivers.StateCancelled {
		t.Errorf("after stop: %+v %v, want cancelled", st, err)
	}
}

// TestProtocolMismatch: a plugin that answers another version is refused
// with a clear error.
func TestProtocolMismatch(t *testing.T) {
	d, err := New(Config{StateDir: t.TempDir(), Command: []string{"/bin/sh", "-c",
		`read line; echo '{"id":1,"result":{"protocol":99,"name":"future"}}'; cat >/dev/null`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	_, err = d.Fingerprint(t.Context())
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "99") {
		t.Errorf("fingerprint: %v, want ErrProtocol naming version 99", err)
	}
}

// TestPluginMissing: a plugin that cannot start gives an error naming it.
func TestPluginMissing(t *testing.T) {
	d, err := New(Config{StateDir: t.TempDir(), Command: []string{"/no/such/plugin"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := d.Fingerprint(t.Context()); err == nil || !strings.Contains(err.Error(), "/no/such/plugin") {
		t.Errorf("fingerprint: %v, want an error naming the plugin", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{{StateDir: "/tmp"}, {Command: []string{"x"}}} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
