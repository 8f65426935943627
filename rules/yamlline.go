package rules

import (
	"bytes"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

var syntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// SyntaxErrorLine corrects the line of a YAML syntax error. The yaml
// parser reports some errors at the line where the enclosing block
// started rather than where it broke ("did not find expected key" on a
// mis-indented entry names the line before it). The first line whose
// prefix of the document fails with the same message is where it broke.
// Errors that are not syntax errors, and those the prefixes cannot
// place, keep yaml's line. It returns err's message without the "yaml:
// line N: " prefix and the corrected line (0 when there is none).
func SyntaxErrorLine(data []byte, err error) (line int, msg string) {
	m := syntaxLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, err.Error()
	}
	reported, _ := strconv.Atoi(m[1])
	msg = m[2]
	lines := bytes.SplitAfter(data, []byte("\n"))
	for n := reported; n <= len(lines) && n <= reported+50; n++ {
		var root yaml.Node
		perr := safeUnmarshal(bytes.Join(lines[:n], nil), &root)
		if perr == nil {
			continue
		}
		if pm := syntaxLineRE.FindStringSubmatch(perr.Error()); pm != nil && pm[2] == msg {
			return n, msg
		}
		break
	}
	return reported, msg
}
