package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-mesh/pcm/agent"
)

// submit warns (and still queues) when no known provider could ever run
// the task, saying which rule rules each out; submit --plan queues
// nothing, sorts the providers and exits 1 when none could ever fit.
func TestSubmitSaysWhenNothingCouldEverFit(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a")
	a := startJoin(t, dir)
	write := func(name, doc string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	huge := write("huge.yaml", "name: huge\nresources: {cpu: 10000}\ncommand: [\"true\"]\n")
	nowhere := write("nowhere.yaml", "name: nowhere\nresources: {cpu: 1}\nconstraints: ['provider.attrs.region == \"nowhere\"']\ncommand: [\"true\"]\n")
	small := write("small.yaml", "name: small\nresources: {cpu: 100m}\ncommand: [\"true\"]\n")

	// Right after start the agent's own advert may not be in its table
	// yet: the plan counts the agent itself all the same.
	for _, tc := range []struct{ file, reason string }{
		{huge, "capacity: cpu needs 10000, has in total"},
		{nowhere, `constraint[0]: provider.attrs.region == "nowhere"`},
	} {
		out, stderr, err := pcm(t, "--data-dir", dir, "-o", "json", "submit", "--plan", tc.file)
		var p agent.Plan
		if jerr := json.Unmarshal([]byte(out), &p); jerr != nil {
			t.Fatalf("plan %s: %q %v", tc.file, out, jerr)
		}
		if exitCode(err) != exitFailure || p.Fits() || len(p.Never) != 1 || !strings.Contains(strings.Join(p.Never[0].Reasons, ";"), tc.reason) {
			t.Fatalf("plan %s: %+v, err %v; want exit 1 and %q", tc.file, p, err, tc.reason)
		}
		_, _, err = pcm(t, "--data-dir", dir, "submit", "--require-fit", tc.file)
		if exitCode(err) != exitFailure || !strings.Contains(fmt.Sprint(err), tc.reason) {
			t.Fatalf("submit --require-fit %s: %v; want exit 1 naming %q", tc.file, err, tc.reason)
		}
		out, stderr, err = pcm(t, "--data-dir", dir, "submit", tc.file)
		if err != nil || !strings.Contains(out, "queued") {
			t.Fatalf("submit %s: %q %v; want it queued", tc.file, out, err)
		}
		if !strings.Contains(stderr, "could ever run") || !strings.Contains(stderr, tc.reason) {
			t.Errorf("submit %s: stderr %q, want a warning with %q", tc.file, stderr, tc.reason)
		}
	}
	out, stderr, err := pcm(t, "--data-dir", dir, "submit", "--plan", small)
	if err != nil || !strings.Contains(out, "fits now") || !strings.Contains(out, a.PeerID) {
		t.Fatalf("plan small: %q %q %v", out, stderr, err)
	}
	// --plan queued nothing: two tasks (the impossible ones) are listed.
	out, _, err = pcm(t, "--data-dir", dir, "-o", "json", "tasks", "list")
	var ts []agent.Task
	if err != nil || json.Unmarshal([]byte(out), &ts) != nil || len(ts) != 2 {
		t.Fatalf("tasks list: %d tasks (%v), want the 2 submitted", len(ts), err)
	}
}
