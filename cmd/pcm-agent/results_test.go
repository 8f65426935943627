package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-mesh/pcm/agent"
)

// tasks results fetches a task's outputs through the agent, checks the
// digest the task's status names, and unpacks them into -o DIR; a task
// without outputs gets a clear error.
func TestTasksResultsUnpacksOutputs(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a")
	startJoin(t, dir)
	task := writeDoc(t, root, "out.yaml", "name: out\nresources: {cpu: 100m}\ncommand: [sh, -c, 'mkdir -p out && echo one > out/1.txt && echo two > two.txt && echo no > skip.txt']\noutputs: {paths: [out, two.txt]}\n")
	if out, stderr, err := pcm(t, "--data-dir", dir, "submit", "--wait", task); err != nil {
		t.Fatalf("submit: %q %q %v", out, stderr, err)
	}
	out, _, err := pcm(t, "--data-dir", dir, "-o", "json", "tasks", "list")
	var ts []agent.Task
	if err != nil || json.Unmarshal([]byte(out), &ts) != nil || len(ts) != 1 || ts[0].Results == nil {
		t.Fatalf("tasks list: %q %v; want one task with results", out, err)
	}
	id, digest := ts[0].ID, ts[0].Results.Digest
	dst := filepath.Join(root, "got")
	out, _, err = pcm(t, "--data-dir", dir, "tasks", "results", id, "-o", dst)
	if err != nil || !strings.Contains(out, digest) {
		t.Fatalf("tasks results: %q %v; want the digest %s", out, err, digest)
	}
	for rel, want := range map[string]string{"out/1.txt": "one\n", "two.txt": "two\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", rel, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "skip.txt")); err == nil {
		t.Error("an undeclared file was unpacked")
	}
	out, _, _ = pcm(t, "--data-dir", dir, "tasks", "status", id)
	if !strings.Contains(out, digest) {
		t.Errorf("tasks status does not show the results digest:\n%s", out)
	}

	plain := writeDoc(t, root, "plain.yaml", "name: plain\nresources: {cpu: 100m}\ncommand: [true]\n")
	if _, _, err := pcm(t, "--data-dir", dir, "submit", "--wait", plain); err != nil {
		t.Fatal(err)
	}
	out, _, _ = pcm(t, "--data-dir", dir, "-o", "json", "tasks", "list")
	_ = json.Unmarshal([]byte(out), &ts)
	var plainID string
	for _, tk := range ts {
		if tk.Name == "plain" {
			plainID = tk.ID
		}
	}
	_, _, err = pcm(t, "--data-dir", dir, "tasks", "results", plainID)
	if err == nil || !strings.Contains(err.Error(), "declared no outputs") {
		t.Fatalf("results of a task without outputs: %v; want an error saying it declared no outputs", err)
	}
}

// results put uploads a directory; a task naming its digest as an input
// reads the files.
func TestResultsPutFeedsATask(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a")
	startJoin(t, dir)
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeDoc(t, data, "sub/x.txt", "forty-two\n")
	out, _, err := pcm(t, "--data-dir", dir, "-o", "json", "results", "put", data)
	var put struct{ Digest string }
	if err != nil || json.Unmarshal([]byte(out), &put) != nil || !strings.HasPrefix(put.Digest, "sha256:") {
		t.Fatalf("results put: %q %v", out, err)
	}
	task := writeDoc(t, root, "use.yaml", "name: use\nresources: {cpu: 100m}\ninputs: [{digest: "+put.Digest+", dir: in}]\ncommand: [grep, -q, forty-two, in/sub/x.txt]\n")
	if out, stderr, err := pcm(t, "--data-dir", dir, "submit", "--wait", task); err != nil {
		t.Fatalf("a task reading the upload: %q %q %v", out, stderr, err)
	}
	out, _, err = pcm(t, "--data-dir", dir, "results", "list")
	if err != nil || !strings.Contains(out, put.Digest) {
		t.Fatalf("results list: %q %v", out, err)
	}
}

// writeDoc writes a document into dir and returns its path.
func writeDoc(t *testing.T, dir, name, doc string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
