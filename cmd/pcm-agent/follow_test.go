package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-mesh/pcm/agent"
)

// tasks logs -f right after submit streams the output live; an id that
// never gets placed is waited for (saying so), then refused.
func TestLogsFollowRightAfterSubmit(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a")
	startJoin(t, dir)
	task := filepath.Join(root, "lines.yaml")
	doc := "name: lines\nresources: {cpu: 100m}\ncommand: [sh, -c, 'for i in 1 2 3; do echo line $i; sleep 0.2; done']\n"
	if err := os.WriteFile(task, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := pcm(t, "--data-dir", dir, "-o", "json", "submit", task)
	var tk agent.Task
	if err != nil || json.Unmarshal([]byte(out), &tk) != nil || tk.ID == "" {
		t.Fatalf("submit: %q %v", out, err)
	}
	out, _, err = pcm(t, "--data-dir", dir, "tasks", "logs", "-f", tk.ID)
	if err != nil || out != "line 1\nline 2\nline 3\n" {
		t.Fatalf("logs -f: %q, %v; want the three lines", out, err)
	}
	_, stderr, err := pcm(t, "--data-dir", dir, "tasks", "logs", "-f", "--wait-placed", "300ms", "t-nosuchtask")
	if err == nil || !strings.Contains(stderr, "not placed yet") {
		t.Fatalf("logs -f of an unknown task: err %v, stderr %q; want a wait, then an error", err, stderr)
	}
}
