package agent_test

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/agent/results"
	"github.com/pcm-mesh/pcm/agent/results/resultstest"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers/archive"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/testnet"
)

// submitVia submits doc from one agent to another over /pcm/submit/1.0.0,
// so the sender is the task's submitter.
func submitVia(t testing.TB, from, to *agent.Agent, doc string) *agent.Task {
	t.Helper()
	s, err := from.Node().NewStream(t.Context(), to.ID(), agent.SubmitProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := mesh.WriteFrame(s, agent.SubmitRequest{V: 1, Name: "t.yaml", Document: []byte(doc)}, 256<<10); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	var resp agent.TaskResponse
	if err := mesh.ReadFrame(bufio.NewReader(s), &resp, 256<<10); err != nil {
		t.Fatal(err)
	}
	if !resp.OK {
		t.Fatalf("submit: %s", resp.Error)
	}
	return resp.Task
}

// ledgerResults returns the results the task's final ledger event names.
func ledgerResults(t *testing.T, a *agent.Agent, taskID string) consensus.ResultsRef {
	t.Helper()
	recs, err := a.Ledger().Entries(t.Context(), consensus.Filter{Type: consensus.TypeTaskEvent, Task: taskID})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		var ev consensus.TaskEvent
		if json.Unmarshal(r.Payload, &ev) == nil && ev.Results != nil {
			return *ev.Results
		}
	}
	t.Fatalf("no ledger event of task %s names results", taskID)
	return consensus.ResultsRef{}
}

func fileSHA(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// unpackArchive unpacks a held archive into a new dir.
func unpackArchive(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	if err := archive.Unpack(f, dir, 0); err != nil {
		t.Fatal(err)
	}
	return dir
}

func holds(a *agent.Agent, digest string) bool {
	for _, m := range a.HeldResults() {
		if m.Digest == digest {
			return true
		}
	}
	return false
}

// Must-show 1: a task on B writes a 50 MiB file and a small one; C, its
// submitter, fetches the results over /pcm/results/1.0.0 (through the Go
// API and the HTTP API); the digest matches the ledger event and the
// files are byte-identical to what the task wrote. B is then stopped and
// A, the broker, still serves them.
func TestResultsFetchedFromAnyAgentAndOutliveTheirProvider(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Topology: testnet.Star})
	m.WaitForMesh(30 * time.Second)
	a, b, c := m.Nodes[0].Agent(), m.Nodes[1].Agent(), m.Nodes[2].Agent()
	doc := fmt.Sprintf(`name: big-results
resources: {cpu: 0.5, memory: 256Mi}
driver: local
constraints: ['provider.id == %q']
script: |
  mkdir -p out
  head -c 52428800 /dev/urandom > out/big.bin
  echo "small result" > small.txt
  echo "not an output" > scratch.txt
outputs: {paths: [out, small.txt]}
`, b.ID())
	tk := submitVia(t, c, a, doc)
	end := waitState(t, m, a, tk.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateSucceeded || end.Provider != b.ID() {
		t.Fatalf("task ended %s on %s: %s", end.State, end.Provider, end.Message)
	}
	ref := ledgerResults(t, a, tk.ID)
	if end.Results == nil || *end.Results != ref {
		t.Fatalf("broker's task record names results %+v, the ledger %+v", end.Results, ref)
	}
	if ref.Size < 50<<20 {
		t.Fatalf("archive is %d bytes; the task wrote 50 MiB", ref.Size)
	}

	// C fetches them (it is the submitter) and gets what B's task wrote.
	meta, path, err := c.FetchResults(t.Context(), tk.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Digest != ref.Digest || meta.Size != ref.Size || "sha256:"+fileSHA(t, path) != ref.Digest {
		t.Fatalf("fetched %+v (file sha256 %s), ledger %+v", meta, fileSHA(t, path), ref)
	}
	got := unpackArchive(t, path)
	work := filepath.Join(m.Nodes[1].Dir, "drivers", "tasks", end.AgreementID, "work")
	for _, rel := range []string{"out/big.bin", "small.txt"} {
		if want, have := fileSHA(t, filepath.Join(work, rel)), fileSHA(t, filepath.Join(got, rel)); want != have {
			t.Errorf("%s: fetched sha256 %s, B wrote %s", rel, have, want)
		}
	}
	if _, err := os.Stat(filepath.Join(got, "scratch.txt")); err == nil {
		t.Error("an undeclared file was in the results")
	}

	// The HTTP API on C serves the same archive with its digest.
	resp, err := http.Get(c.APIURL() + "/v1/tasks/" + tk.ID + "/results")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || n != ref.Size || resp.Header.Get(agent.HeaderResultsDigest) != ref.Digest || "sha256:"+hex.EncodeToString(h.Sum(nil)) != ref.Digest {
		t.Fatalf("GET results: %s, %d bytes, digest header %q: %v", resp.Status, n, resp.Header.Get(agent.HeaderResultsDigest), err)
	}

	// The broker keeps a copy; with B stopped, C fetches again from A.
	m.WaitFor(time.Minute, "the broker to keep a copy", func() bool { return holds(a, ref.Digest) })
	m.Stop(1)
	c.DropResults(ref.Digest)
	meta, path, err = c.FetchResults(t.Context(), tk.ID, nil)
	if err != nil {
		t.Fatalf("fetch with the provider stopped: %v", err)
	}
	if meta.Digest != ref.Digest || "sha256:"+fileSHA(t, path) != ref.Digest {
		t.Fatalf("fetched %+v from the broker, ledger %+v", meta, ref)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, hdr.Name)
	}
	if strings.Join(names, ",") != "out/,out/big.bin,small.txt" {
		t.Fatalf("archive holds %v", names)
	}
}

// Must-show 3 (across agents): B, the provider, holds a corrupted copy;
// C's fetch detects it by the digest and gets the archive from A, the
// broker. A peer that is not entitled (C, for a task A submitted itself)
// is refused by its own agent and, asking a holder directly, by the
// holder, which counts the refusal.
func TestResultsCorruptCopyIsRefetchedAndStrangersAreRefused(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Topology: testnet.Star})
	m.WaitForMesh(30 * time.Second)
	a, b, c := m.Nodes[0].Agent(), m.Nodes[1].Agent(), m.Nodes[2].Agent()
	doc := func(name string) string {
		return fmt.Sprintf("name: %s\nresources: {cpu: 0.5, memory: 128Mi}\ndriver: local\nconstraints: ['provider.id == %q']\nscript: head -c 4194304 /dev/urandom > r.bin\noutputs: {paths: [r.bin]}\n", name, b.ID())
	}
	mine := submitVia(t, c, a, doc("cs-task"))
	if end := waitState(t, m, a, mine.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed); end.State != agent.StateSucceeded {
		t.Fatalf("task ended %s: %s", end.State, end.Message)
	}
	ref := ledgerResults(t, a, mine.ID)
	m.WaitFor(time.Minute, "the broker to keep a copy", func() bool { return holds(a, ref.Digest) })
	resultstest.FlipByte(t, filepath.Join(m.Nodes[1].Dir, "results", strings.TrimPrefix(ref.Digest, "sha256:")+".tar"), ref.Size/2)
	meta, path, err := c.FetchResults(t.Context(), mine.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Digest != ref.Digest || "sha256:"+fileSHA(t, path) != ref.Digest {
		t.Fatalf("fetched %+v (sha256 %s), ledger %+v", meta, fileSHA(t, path), ref)
	}
	if st := c.ResultsStats(); st.Corrupt != 1 || st.Fetched != 1 {
		t.Fatalf("fetch stats %+v; want B's corrupted copy dropped once, then one verified fetch", st)
	}

	theirs, err := a.Submit([]byte(doc("a-task")), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if end := waitState(t, m, a, theirs.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed); end.State != agent.StateSucceeded {
		t.Fatalf("task ended %s: %s", end.State, end.Message)
	}
	other := ledgerResults(t, a, theirs.ID)
	if _, _, err := c.FetchResults(t.Context(), theirs.ID, nil); err == nil || !strings.Contains(err.Error(), "not entitled") {
		t.Fatalf("C fetched the results of a task it has no part in: %v", err)
	}
	before := b.Refusals()["task_results"]
	s, err := c.Node().NewStream(t.Context(), b.ID(), results.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := mesh.WriteFrame(s, results.Request{V: 1, Digest: other.Digest}, results.MaxRequest); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	var resp results.Response
	if err := mesh.ReadFrame(bufio.NewReader(s), &resp, results.MaxRequest); err != nil {
		t.Fatal(err)
	}
	if resp.OK || !strings.Contains(resp.Error, "not entitled") {
		t.Fatalf("B answered a stranger %+v", resp)
	}
	if rest, _ := io.ReadAll(s); len(rest) > 0 {
		t.Fatalf("B sent %d bytes after refusing", len(rest))
	}
	if after := b.Refusals()["task_results"]; after != before+1 {
		t.Fatalf("refusals task_results %d -> %d, want one more", before, after)
	}
}

// Must-show 2: a two-step pipeline across providers. Task 1 runs on B
// and writes a file; task 2 names task 1's results digest as an input,
// runs on C, which fetches them over the mesh before it starts, reads the
// file and writes its own result. The ledger names both digests.
func TestPipelineInputsFromAnotherTasksResults(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Topology: testnet.Star})
	m.WaitForMesh(30 * time.Second)
	a, b, c := m.Nodes[0].Agent(), m.Nodes[1].Agent(), m.Nodes[2].Agent()
	step1, err := a.Submit(fmt.Appendf(nil, `name: step1
resources: {cpu: 0.5, memory: 128Mi}
driver: local
constraints: ['provider.id == %q']
script: |
  mkdir -p out
  echo "made by step 1 on $(hostname)" > out/data.txt
  head -c 1048576 /dev/urandom > out/noise.bin
outputs: {paths: [out]}
`, b.ID()), "step1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if end := waitState(t, m, a, step1.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed); end.State != agent.StateSucceeded {
		t.Fatalf("step 1 ended %s: %s", end.State, end.Message)
	}
	first := ledgerResults(t, a, step1.ID)
	step2, err := a.Submit(fmt.Appendf(nil, `name: step2
resources: {cpu: 0.5, memory: 128Mi}
driver: local
constraints: ['provider.id == %q']
inputs: [{digest: %q, dir: in}]
script: |
  grep -q "made by step 1" in/out/data.txt || exit 3
  sha256sum in/out/noise.bin > checked.txt
  cp in/out/data.txt seen.txt
outputs: {paths: [checked.txt, seen.txt]}
`, c.ID(), first.Digest), "step2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	end := waitState(t, m, a, step2.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateSucceeded || end.Provider != c.ID() {
		t.Fatalf("step 2 ended %s on %s: %s", end.State, end.Provider, end.Message)
	}
	second := ledgerResults(t, a, step2.ID)
	if second.Digest == first.Digest {
		t.Fatal("both steps name the same digest")
	}
	_, path, err := a.FetchResults(t.Context(), step2.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := unpackArchive(t, path)
	_, path1, err := a.FetchResults(t.Context(), step1.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := unpackArchive(t, path1)
	if fileSHA(t, filepath.Join(got, "seen.txt")) != fileSHA(t, filepath.Join(in, "out", "data.txt")) {
		t.Fatal("step 2 did not see step 1's file")
	}
	sum, err := os.ReadFile(filepath.Join(got, "checked.txt"))
	if err != nil || !strings.HasPrefix(string(sum), fileSHA(t, filepath.Join(in, "out", "noise.bin"))) {
		t.Fatalf("step 2's checksum of the input %q does not match step 1's file: %v", sum, err)
	}
	if !holds(c, first.Digest) {
		t.Fatal("C, which ran step 2, does not keep step 1's results it fetched")
	}

	// C may not read step 1's results: a task C submits naming them as
	// an input fails with the holder's refusal, nothing leaks.
	c.DropResults(first.Digest)
	sneak := submitVia(t, c, a, fmt.Sprintf("name: sneak\nresources: {cpu: 0.5, memory: 128Mi}\ndriver: local\nconstraints: ['provider.id == %q']\ninputs: [{digest: %q}]\nscript: cp out/data.txt stolen.txt\noutputs: {paths: [stolen.txt]}\n", c.ID(), first.Digest))
	end = waitState(t, m, a, sneak.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateFailed || !strings.Contains(end.Message, "not entitled") {
		t.Fatalf("a task whose submitter may not read its input ended %s: %s", end.State, end.Message)
	}
	if holds(c, first.Digest) {
		t.Fatal("C holds step 1's results after the refusal")
	}
}

// Inputs by a path on the submitting agent: A uploads a directory
// (pcm-agent results put) and a task A submits names its digest; B, the
// provider, fetches it from A. A task C submits naming the same digest is
// refused: only the uploader's own tasks get it.
func TestUploadedInputGoesOnlyToTheUploadersTasks(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Topology: testnet.Star})
	m.WaitForMesh(30 * time.Second)
	a, b, c := m.Nodes[0].Agent(), m.Nodes[1].Agent(), m.Nodes[2].Agent()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "params.txt"), []byte("alpha=0.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var tarball strings.Builder
	if _, err := archive.Collect(src, []string{"*"}, 0, &tarball); err != nil {
		t.Fatal(err)
	}
	up, err := a.PutResults(strings.NewReader(tarball.String()))
	if err != nil {
		t.Fatal(err)
	}
	doc := func(name string) string {
		return fmt.Sprintf("name: %s\nresources: {cpu: 0.5, memory: 128Mi}\ndriver: local\nconstraints: ['provider.id == %q']\ninputs: [{digest: %q, dir: in}]\nscript: grep -q alpha=0.5 in/params.txt\n", name, b.ID(), up.Digest)
	}
	mine, err := a.Submit([]byte(doc("uses-upload")), "u.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if end := waitState(t, m, a, mine.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed); end.State != agent.StateSucceeded {
		t.Fatalf("the uploader's task ended %s: %s", end.State, end.Message)
	}
	if !holds(b, up.Digest) {
		t.Fatal("B did not keep the input it fetched")
	}
	// B keeps a copy now; it must not use it for a task whose submitter
	// the uploader's rule does not allow.
	theirs := submitVia(t, c, a, doc("steals-upload"))
	end := waitState(t, m, a, theirs.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateFailed || !strings.Contains(end.Message, "uploaded by") {
		t.Fatalf("a stranger's task naming an upload ended %s: %s", end.State, end.Message)
	}
}
