package rules

import (
	"bytes"
	"testing"
)

// The seed corpus lives in testdata/fuzz/Fuzz*/; these adds cover the examples.
func addExamples(f *testing.F, names ...string) {
	for _, n := range names {
		f.Add(readExample(f, n))
	}
}

// FuzzParseFramework: the decoder never panics, and any accepted document
// re-encodes canonically to a document with the same id.
func FuzzParseFramework(f *testing.F) {
	addExamples(f, "framework-general.yaml", "framework-hpc.yaml", "framework-ai.yaml")
	f.Add([]byte(goodFramework))
	f.Fuzz(func(t *testing.T, data []byte) {
		fw, err := ParseFramework("fuzz", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		again, err := ParseFramework("canonical", fw.Canonical())
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, fw.Canonical())
		}
		if again.ID() != fw.ID() || !bytes.Equal(again.Canonical(), fw.Canonical()) {
			t.Fatalf("canonical form is not stable:\n%s\n%s", fw.Canonical(), again.Canonical())
		}
	})
}

// FuzzParseTask: as above for tasks and their hash.
func FuzzParseTask(f *testing.F) {
	addExamples(f, "task-shell.yaml", "task-slurm.yaml", "task-gpu.yaml")
	f.Add([]byte(goodTask))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := ParseTask("fuzz", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		again, err := ParseTask("canonical", tk.Canonical())
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, tk.Canonical())
		}
		if again.Hash() != tk.Hash() {
			t.Fatalf("hash not stable:\n%s\n%s", tk.Canonical(), again.Canonical())
		}
		// Evaluation never panics on what parses.
		DefaultFramework().Evaluate(tk, &Provider{ID: "p"}, now)
	})
}
