package rules_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/rules"
)

const digestA = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestTaskOutputsAndInputs(t *testing.T) {
	doc := "name: f\nresources: {cpu: 1}\ncommand: [x]\noutputs: {paths: [out, '*.csv'], max_size: 64Mi}\ninputs: [{digest: " + digestA + ", dir: in}]\n"
	tk, err := rules.ParseTask("t.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if tk.Outputs.MaxSize != 64<<20 || len(tk.Inputs) != 1 || tk.Inputs[0].Dir != "in" {
		t.Fatalf("parsed %+v %+v", tk.Outputs, tk.Inputs)
	}
	again, err := rules.ParseTask("canonical", tk.Canonical())
	if err != nil || again.Hash() != tk.Hash() {
		t.Fatalf("canonical form does not read back to the same hash: %v", err)
	}
	for _, tc := range []struct{ edit, field string }{
		{"outputs: {paths: []}", "outputs.paths"},
		{"outputs: {paths: [/etc/passwd]}", "outputs.paths[0]"},
		{"outputs: {paths: [a/../../x]}", "outputs.paths[0]"},
		{"inputs: [{digest: sha256:abc}]", "inputs[0].digest"},
		{"inputs: [{digest: " + digestA + ", dir: ../up}]", "inputs[0].dir"},
	} {
		_, err := rules.ParseTask("t.yaml", []byte("name: f\nresources: {cpu: 1}\ncommand: [x]\n"+tc.edit+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v does not name %s", tc.edit, err, tc.field)
		}
	}
}

func TestFrameworkCapsOutputs(t *testing.T) {
	fw, err := rules.ParseFramework("fw.yaml", []byte("name: capped\nversion: '1'\ntemplates: {cpu: {unit: cores}}\nresults: {max_size: 1Mi}\n"))
	if err != nil {
		t.Fatal(err)
	}
	big, err := rules.ParseTask("t.yaml", []byte("name: f\nframework: capped\nresources: {cpu: 1}\ncommand: [x]\noutputs: {paths: [out], max_size: 2Mi}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = fw.Admit(big, rules.Submitter{ID: "p"}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "outputs.max_size") || !strings.Contains(err.Error(), "results.max_size") {
		t.Fatalf("admit: %v; want outputs.max_size above results.max_size", err)
	}
	open, _ := rules.ParseTask("t.yaml", []byte("name: f\nframework: capped\nresources: {cpu: 1}\ncommand: [x]\noutputs: {paths: [out]}\n"))
	if err := fw.Admit(open, rules.Submitter{ID: "p"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := fw.OutputLimit(open); got != 1<<20 {
		t.Fatalf("output limit %d, want the framework's 1 MiB", got)
	}
	if rules.DefaultFramework().OutputLimit(open) != 0 {
		t.Fatal("the default framework caps outputs")
	}
}
