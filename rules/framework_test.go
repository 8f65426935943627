package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readExample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testnet", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustFramework(t testing.TB, name string) *Framework {
	t.Helper()
	f, err := ParseFramework(name, readExample(t, name))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return f
}

func TestParseFrameworkExamples(t *testing.T) {
	tests := []struct {
		file, name, strategy string
		candidates           int
	}{
		{"framework-general.yaml", "general", "least-loaded", 3},
		{"framework-hpc.yaml", "hpc", "binpack", 5},
		{"framework-ai.yaml", "ai", "weighted", 4},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f := mustFramework(t, tt.file)
			if f.Name != tt.name || f.Placement.Strategy != tt.strategy || f.Placement.Candidates != tt.candidates {
				t.Errorf("got name %q strategy %q candidates %d", f.Name, f.Placement.Strategy, f.Placement.Candidates)
			}
			if f.Strategy().Name() != tt.strategy {
				t.Errorf("compiled strategy %q", f.Strategy().Name())
			}
			if !strings.HasPrefix(f.ID(), "fw1-") || len(f.ID()) != 4+52 || strings.ToLower(f.ID()) != f.ID() {
				t.Errorf("id %q is not fw1- + 52 lower-case base32 characters", f.ID())
			}
			// The canonical form is itself a valid document with the same id.
			again, err := ParseFramework("canonical", f.Canonical())
			if err != nil {
				t.Fatalf("reparse canonical: %v", err)
			}
			if again.ID() != f.ID() {
				t.Errorf("canonical reparse id %s != %s", again.ID(), f.ID())
			}
		})
	}
}

func TestDefaultFramework(t *testing.T) {
	f := DefaultFramework()
	if f.Name != "default" || f.Placement.Strategy != "least-loaded" || len(f.Pricing.Prices) != 0 {
		t.Fatalf("unexpected default framework: %s", f.Canonical())
	}
	for _, class := range []string{"cpu", "memory", "storage", "gpu", "gpu:a100"} {
		if _, ok := f.template(class); !ok {
			t.Errorf("default framework has no template for %s", class)
		}
	}
	if DefaultFramework().ID() != f.ID() {
		t.Error("default framework id is not stable")
	}
	if !f.Matches("") || !f.Matches("default") || f.Matches("hpc") {
		t.Error("Matches is wrong for the default framework")
	}
}

const goodFramework = `name: t
version: "1"
templates:
  cpu: {unit: cores, max: "8"}
  memory: {unit: MiB}
placement: {strategy: lowest-price}
`

// TestFrameworkIDCanonical: formatting, key order, JSON vs YAML and
// spelled-out defaults do not change the id; any content change does.
func TestFrameworkIDCanonical(t *testing.T) {
	base, err := ParseFramework("base", []byte(goodFramework))
	if err != nil {
		t.Fatal(err)
	}
	same := map[string]string{
		"reordered": "placement: {strategy: lowest-price}\ntemplates:\n  memory: {unit: MiB}\n  cpu: {max: \"8\", unit: cores}\nversion: \"1\"\nname: t\n",
		"json":      `{"name":"t","version":"1","templates":{"cpu":{"unit":"cores","max":"8"},"memory":{"unit":"MiB"}},"placement":{"strategy":"lowest-price"}}`,
		"defaults":  goodFramework + "operations: [run, cancel, query]\npricing: {currency: PCM}\nsettlement: {basis: wall}\n",
		"comments":  "# a comment\n" + goodFramework,
	}
	for name, doc := range same {
		f, err := ParseFramework(name, []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.ID() != base.ID() {
			t.Errorf("%s: id %s, want %s", name, f.ID(), base.ID())
		}
	}
	changed := map[string]string{
		"name":        strings.Replace(goodFramework, "name: t", "name: u", 1),
		"version":     strings.Replace(goodFramework, `version: "1"`, `version: "2"`, 1),
		"max":         strings.Replace(goodFramework, `max: "8"`, `max: "9"`, 1),
		"strategy":    strings.Replace(goodFramework, "lowest-price", "binpack", 1),
		"description": goodFramework + "description: x\n",
		"rule":        goodFramework + "provider_rule: 'true'\n",
	}
	seen := map[string]string{base.ID(): "base"}
	for name, doc := range changed {
		f, err := ParseFramework(name, []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if prev, dup := seen[f.ID()]; dup {
			t.Errorf("%s: id %s equals that of %s", name, f.ID(), prev)
		}
		seen[f.ID()] = name
	}
}

// TestBadFrameworks: every kind of bad document gives its own error naming
// the field and line; none panics.
func TestBadFrameworks(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		sentinel error
		path     string
		line     int
		msg      string
	}{
		{"unknown field", goodFramework + "colour: blue\n", ErrUnknownField, "colour", 7, `unknown field "colour"`},
		{"unknown nested field", "name: t\nversion: \"1\"\ntemplates:\n  cpu: {unit: cores, maxx: \"8\"}\n", ErrUnknownField, "templates.cpu.maxx", 4, "known fields: description, max, min, unit"},
		{"wrong type", strings.Replace(goodFramework, "placement: {strategy: lowest-price}", "placement: {strategy: lowest-price, candidates: many}", 1), ErrWrongType, "placement.candidates", 6, `want an integer, got "many"`},
		{"list for string", goodFramework + "admission: [a, b]\n", ErrWrongType, "admission", 7, "want a string, got a list"},
		{"bad unit", strings.Replace(goodFramework, `max: "8"`, `max: 8GiB`, 1), ErrBadUnit, "templates.cpu.max", 4, `unit "GiB" is not a cpu unit`},
		{"unit does not fit class", strings.Replace(goodFramework, "memory: {unit: MiB}", "memory: {unit: cores}", 1), ErrBadUnit, "templates.memory.unit", 5, "does not fit class memory"},
		{"unknown unit", strings.Replace(goodFramework, "memory: {unit: MiB}", "memory: {unit: parsecs}", 1), ErrBadUnit, "templates.memory.unit", 5, `unit "parsecs" is unknown`},
		{"unknown strategy", strings.Replace(goodFramework, "lowest-price", "fastest", 1), ErrUnknownStrat, "placement.strategy", 6, `strategy "fastest" is unknown; known: binpack, least-loaded, lowest-price, random, spread, weighted`},
		{"strategy param", strings.Replace(goodFramework, "{strategy: lowest-price}", "{strategy: weighted, params: {speed: \"1\"}}", 1), ErrBadValue, "placement.params.speed", 6, `not "speed"`},
		{"cel syntax", goodFramework + "provider_rule: 'provider.attrs.region =='\n", ErrExprSyntax, "provider_rule", 7, "CEL syntax error"},
		{"cel type", goodFramework + "provider_rule: 'now > 5'\n", ErrExprType, "provider_rule", 7, "CEL type error"},
		{"cel not bool", goodFramework + "admission: '\"yes\"'\n", ErrExprType, "admission", 7, "must give a bool"},
		{"cel undeclared", goodFramework + "admission: 'provider.attrs.region == \"x\"'\n", ErrExprType, "admission", 7, "undeclared reference to 'provider'"},
		{"cel over-cost", goodFramework + "provider_rule: 'provider.attrs.all(a, provider.attrs.all(b, provider.attrs.all(c, a + b + c != \"\")))'\n", ErrExprCost, "provider_rule", 7, "CEL over-cost"},
		{"missing name", "version: \"1\"\ntemplates: {cpu: {unit: cores}}\n", ErrMissing, "name", 0, `name "" must be`},
		{"bad money", goodFramework + "pricing: {prices: {cpu: {fixed: \"0.1234567\"}}}\n", ErrBadValue, "pricing.prices.cpu.fixed", 7, "more than 6 decimals"},
		{"bad duration", strings.Replace(goodFramework, "{strategy: lowest-price}", "{strategy: lowest-price, bid_timeout: soon}", 1), ErrBadValue, "placement.bid_timeout", 6, "not a duration"},
		{"price without template", goodFramework + "pricing: {prices: {gpu: {fixed: \"1\"}}}\n", ErrBadValue, "pricing.prices.gpu", 7, "has no template"},
		{"min above max", strings.Replace(goodFramework, `max: "8"`, `min: "9", max: "8"`, 1), ErrOutOfRange, "templates.cpu.min", 4, "above max"},
		{"duplicate field", goodFramework + "name: again\n", ErrDuplicateField, "name", 7, "given twice"},
		{"yaml syntax", "name: [t\n", ErrSyntax, "", 0, "not valid YAML or JSON"},
		{"not a mapping", "- a\n- b\n", ErrWrongType, "", 1, "want a mapping of fields"},
		{"alias", "name: &n t\nversion: *n\n", ErrWrongType, "name", 1, "aliases are not supported"},
		{"settlement basis", goodFramework + "settlement: {basis: vibes}\n", ErrBadValue, "settlement.basis", 7, "use wall or cpu"},
		{"operation", goodFramework + "operations: [run, reboot]\n", ErrBadValue, "operations[1]", 7, `operation "reboot" is unknown`},
	}
	seenMsgs := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFramework("fw.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an *ErrorList: %v", err, err)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error does not wrap %v: %v", tt.sentinel, err)
			}
			var hit *FieldError
			for i := range list.Errors {
				if list.Errors[i].Path == tt.path && errors.Is(list.Errors[i], tt.sentinel) {
					hit = &list.Errors[i]
				}
			}
			if hit == nil {
				t.Fatalf("no %v error at path %q: %v", tt.sentinel, tt.path, err)
			}
			if tt.line > 0 && hit.Line != tt.line {
				t.Errorf("line %d, want %d: %v", hit.Line, tt.line, hit)
			}
			if !strings.Contains(hit.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", hit.Msg, tt.msg)
			}
			want := "fw.yaml:"
			if !strings.HasPrefix(hit.Error(), want) {
				t.Errorf("error %q does not start with %q", hit.Error(), want)
			}
			if prev, dup := seenMsgs[hit.Error()]; dup {
				t.Errorf("same error text as case %q: %s", prev, hit.Error())
			}
			seenMsgs[hit.Error()] = tt.name
		})
	}
}

func TestErrorListFormat(t *testing.T) {
	_, err := ParseFramework("x.yaml", []byte("name: t\nversion: \"1\"\ntemplates:\n  cpu: {unit: cores}\nfoo: 1\nbar: 2\n"))
	want := "x.yaml:5: foo: unknown field \"foo\"; known fields: "
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], want) || !strings.HasPrefix(lines[1], "x.yaml:6: bar: ") {
		t.Fatalf("got\n%s", err)
	}
}
