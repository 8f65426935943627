package drivertest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/archive"
)

// testFiles checks both sides of the files capability (Fingerprint.Files,
// drivers.Collector): a driver that has it stages inputs into the work dir before the task starts and
// collects the declared outputs after it ends (byte-identical, nothing
// undeclared); a driver without it refuses specs with inputs or outputs.
func testFiles(t *testing.T, h *Harness) {
	d := h.newDriver(t, t.TempDir())
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	col, ok := d.(drivers.Collector)
	if fp.Files && !ok {
		t.Fatalf("%s: fingerprint says files but the driver does not implement drivers.Collector", d.Name())
	}
	if !fp.Files {
		for name, edit := range map[string]func(*drivers.TaskSpec){
			"outputs": func(s *drivers.TaskSpec) { s.Outputs = &drivers.Outputs{Paths: []string{"out"}} },
			"inputs":  func(s *drivers.TaskSpec) { s.Inputs = []drivers.Input{{Archive: "/nonexistent.tar"}} },
		} {
			spec := h.printExit("files-"+name, "must not run", 0)
			edit(&spec)
			if _, err := d.Start(t.Context(), spec); !errors.Is(err, drivers.ErrInvalidSpec) {
				t.Errorf("%s: a driver without drivers.Collector started a spec with %s: %v", d.Name(), name, err)
			}
		}
		return
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "msg.txt"), []byte("from the input archive\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "in.tar")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Collect(src, []string{"msg.txt"}, 0, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	spec := drivers.TaskSpec{
		ID: "files", Resources: h.Small,
		Command: []string{"/bin/sh", "-c", "mkdir -p out && cp in/msg.txt out/copy.txt && echo small > small.txt && echo no > undeclared.txt"},
		Inputs:  []drivers.Input{{Archive: in, Dir: "in"}},
		Outputs: &drivers.Outputs{Paths: []string{"out", "small.txt", "never-written/*"}, MaxBytes: 1 << 20},
	}
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("start: %v", err)
	}
	st := h.waitFinal(t, d, spec.ID)
	if st.State != drivers.StateSucceeded {
		t.Fatalf("task ended %s (%d): %s", st.State, st.ExitCode, st.Message)
	}
	var buf bytes.Buffer
	n, err := col.CollectOutputs(t.Context(), spec.ID, &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("collect: %d bytes reported, %d written: %v", n, buf.Len(), err)
	}
	got := t.TempDir()
	if err := archive.Unpack(&buf, got, 0); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"out/copy.txt": "from the input archive\n", "small.txt": "small\n"} {
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil || string(b) != want {
			t.Errorf("output %s: %q, %v; want %q", rel, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(got, "undeclared.txt")); err == nil {
		t.Error("a file the spec did not declare was collected")
	}
	plain := h.printExit("no-outputs", "x", 0)
	if _, err := d.Start(t.Context(), plain); err != nil {
		t.Fatal(err)
	}
	h.waitFinal(t, d, plain.ID)
	if _, err := col.CollectOutputs(t.Context(), plain.ID, &bytes.Buffer{}); !errors.Is(err, drivers.ErrNoOutputs) {
		t.Errorf("collect from a task without outputs: %v, want ErrNoOutputs", err)
	}
}
