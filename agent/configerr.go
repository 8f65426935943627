package agent

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pcm-mesh/pcm/rules"
)

var (
	lineRe         = regexp.MustCompile(`line (\d+): `)
	unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
	wrongTypeRe    = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: (.*))? into (\\S+)$")
)

// wantType says in words what a Go type of Config expects.
var wantType = map[string]string{
	"time.Duration":      "a duration such as 10s or 1m30s",
	"int":                "an integer",
	"float64":            "a number",
	"bool":               "true or false",
	"string":             "a string",
	"[]string":           "a list of strings",
	"map[string]string":  "a mapping of KEY: VALUE strings",
	"map[string]float64": "a mapping of KEY: NUMBER",
}

var errBadConfig = errors.New("fix the field and start again")

// namedFields rewrites yaml's errors for a person: every "line N:" gets
// the field path, an unknown field lists the known ones (instead of a Go
// type name), and a syntax error names the line where the text broke.
func namedFields(data []byte, err error) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		line, msg := rules.SyntaxErrorLine(data, err)
		if line > 0 {
			return fmt.Errorf("line %d: not valid YAML: %s (%w)", line, msg, errBadConfig)
		}
		return fmt.Errorf("not valid YAML: %s (%w)", msg, errBadConfig)
	}
	var parts []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		parts = te.Errors
	} else {
		parts = []string{err.Error()}
	}
	for i, p := range parts {
		m := lineRe.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		path := pathAtLine(&root, line, "")
		if path == "" {
			continue
		}
		msg := strings.TrimPrefix(p, m[0])
		if um := unknownFieldRe.FindStringSubmatch(msg); um != nil {
			parent := ""
			if i := strings.LastIndex(path, "."); i >= 0 {
				parent = path[:i]
			}
			msg = fmt.Sprintf("unknown field %q; known fields: %s", um[1], strings.Join(knownFields(parent), ", "))
		} else if wm := wrongTypeRe.FindStringSubmatch(msg); wm != nil {
			want, ok := wantType[wm[3]]
			if !ok {
				want = "another kind of value"
			}
			got := wm[2]
			switch {
			case wm[1] == "seq":
				got = "a list"
			case wm[1] == "map":
				got = "a mapping"
			}
			msg = fmt.Sprintf("%s is not %s", got, want)
		}
		parts[i] = fmt.Sprintf("line %d: %s: %s", line, path, msg)
	}
	return fmt.Errorf("%s (%w)", strings.Join(parts, "; "), errBadConfig)
}

// knownFields lists the YAML field names of the Config struct at the
// dotted path ("" is Config itself, "ledger" is LedgerConfig).
func knownFields(path string) []string {
	t := reflect.TypeFor[Config]()
	if path != "" {
		for _, seg := range strings.Split(path, ".") {
			f, ok := yamlField(t, seg)
			if !ok || f.Type.Kind() != reflect.Struct {
				return nil
			}
			t = f.Type
		}
	}
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// pathAtLine finds the dotted key path of the mapping entry on line.
func pathAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if p := pathAtLine(c, line, prefix); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if k.Line == line {
				return path
			}
			if p := pathAtLine(v, line, path); p != "" {
				return p
			}
		}
	}
	return ""
}
