package rules

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// SyntaxErrorLine names the line where the text broke, not the line where
// yaml's enclosing block began.
func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		line int
	}{
		{"name: a\nresources:\n  cpu: 1\n memory: 1Gi\n", 4}, // yaml says 3
		{"name: a\ncommand: [\n", 2},
		{"name: a\ndriver: local: x\n", 2},
		{"name: a\n\tdriver: x\n", 2},
	} {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(tc.doc), &n)
		if err == nil {
			t.Fatalf("%q parsed", tc.doc)
		}
		if got, _ := SyntaxErrorLine([]byte(tc.doc), err); got != tc.line {
			t.Errorf("%q: line %d, want %d (yaml said %v)", tc.doc, got, tc.line, err)
		}
	}
}
