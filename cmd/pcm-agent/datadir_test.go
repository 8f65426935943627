package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
)

// pcm runs pcm-agent with args (global flags may follow the subcommand,
// as on the command line) and returns stdout, stderr and the error.
func pcm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.RunContext(t.Context(), hoistGlobalFlags(app, append([]string{"pcm-agent"}, args...)))
	return out.String(), errOut.String(), err
}

// startJoin runs `pcm-agent --data-dir dir join` on free loopback ports
// until the test ends and returns what it wrote to api.json.
func startJoin(t *testing.T, dir string) agent.APIFileInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		app := newApp()
		app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
		done <- app.RunContext(ctx, []string{"pcm-agent", "--data-dir", dir, "join",
			"--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--log-level", "error"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("join did not stop within 60s")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := agent.ReadAPIFile(dir)
		if err == nil {
			return info
		}
		select {
		case err := <-done:
			t.Fatalf("join in %s ended: %v", dir, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("join in %s wrote no %s within 60s: %v", dir, agent.APIFile, err)
		}
	}
}

func peerIDOf(t *testing.T, out string) string {
	t.Helper()
	var v struct {
		PeerID string `json:"peer_id"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %q: %v", out, err)
	}
	return v.PeerID
}

// A command given --data-dir acts on that data dir: it talks to the agent
// owning it (never to whatever answers on --api), refuses an --api that
// is another agent, and reads a stopped agent's data dir offline, saying
// so.
func TestDataDirPicksItsOwnAgent(t *testing.T) {
	root := t.TempDir()
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	a, b := startJoin(t, dirA), startJoin(t, dirB)
	if a.PeerID == b.PeerID {
		t.Fatal("two agents share a peer id")
	}
	t.Setenv("PCM_API", a.URL) // "an unrelated agent on the default API"

	// Global flags before or after the subcommand.
	for _, args := range [][]string{
		{"--data-dir", dirB, "-o", "json", "status"},
		{"status", "--data-dir", dirB, "-o", "json"},
		{"status", "-o=json", "--data-dir=" + dirB},
	} {
		out, stderr, err := pcm(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if got := peerIDOf(t, out); got != b.PeerID {
			t.Fatalf("%v answered as %s, want the data dir's agent %s", args, got, b.PeerID)
		}
		if !strings.Contains(stderr, dirB) {
			t.Errorf("%v: stderr %q does not say which agent answered", args, stderr)
		}
	}
	out, _, err := pcm(t, "id", "--data-dir", dirB, "-o", "json")
	if err != nil || peerIDOf(t, out) != b.PeerID {
		t.Fatalf("id --data-dir B = %q, %v; want %s", out, err, b.PeerID)
	}
	out, _, err = pcm(t, "ledger", "verify", "--data-dir", dirB, "-o", "json")
	if err != nil || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("ledger verify --data-dir B: %q, %v", out, err)
	}

	// --api naming another agent than the data dir's: refused, both named.
	_, _, err = pcm(t, "--api", a.URL, "--data-dir", dirB, "status")
	if err == nil || !strings.Contains(err.Error(), a.PeerID) || !strings.Contains(err.Error(), b.PeerID) || exitCode(err) != exitUsage {
		t.Fatalf("--api A --data-dir B: err = %v (exit %d), want a refusal naming both agents (exit %d)", err, exitCode(err), exitUsage)
	}

	// A data dir no agent runs on: online commands fail with exit 3;
	// verify and id read it offline and say so.
	dirC := filepath.Join(root, "c")
	if _, _, err := pcm(t, "--data-dir", dirC, "id", "--init"); err != nil {
		t.Fatal(err)
	}
	_, _, err = pcm(t, "--data-dir", dirC, "peers")
	if !errors.Is(err, errNoOwningAgent) || exitCode(err) != exitUnavailable {
		t.Fatalf("peers on an idle data dir: err = %v (exit %d), want errNoOwningAgent (exit %d)", err, exitCode(err), exitUnavailable)
	}
	out, stderr, err := pcm(t, "--data-dir", dirC, "-o", "json", "id")
	if err != nil || peerIDOf(t, out) == a.PeerID || !strings.Contains(stderr, "offline") {
		t.Fatalf("id on an idle data dir: %q %q %v, want its own id read offline", out, stderr, err)
	}
	if err := os.MkdirAll(filepath.Join(dirC, "ledger"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ = pcm(t, "--data-dir", dirC, "ledger", "verify")
	if !strings.Contains(stderr, "offline") {
		t.Fatalf("ledger verify on an idle data dir: stderr %q, want it to say it read offline", stderr)
	}
}

// hoistGlobalFlags moves global flags after the subcommand to the front,
// but leaves a flag the command defines itself (join --api-token) and
// everything after "--".
func TestHoistGlobalFlags(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		{"ledger verify --data-dir X", "--data-dir X ledger verify"},
		{"ledger list --type agreement -o json", "-o json ledger list --type agreement"},
		{"tasks logs -f ID --api=http://h:1", "--api=http://h:1 tasks logs -f ID"},
		{"join --api-token T --listen 0", "join --api-token T --listen 0"},
		{"--data-dir X id", "--data-dir X id"},
		{"submit f.yaml -- --data-dir Y", "submit f.yaml -- --data-dir Y"},
		{"tasks results ID -o DIR", "tasks results -o DIR ID"},
		{"tasks results ID --tar F --data-dir X", "--data-dir X tasks results --tar F ID"},
		{"submit f.yaml --wait", "submit --wait f.yaml"},
	} {
		got := strings.Join(hoistGlobalFlags(app, append([]string{"pcm-agent"}, strings.Fields(tc.in)...))[1:], " ")
		if got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
}

// waitFor polls cond every 50 ms for up to 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 60s waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
