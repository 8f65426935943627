package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestRuntimeCostLimit: an expression that passes the load-time estimate but
// meets an oversized advert is stopped at CostLimit and explained.
func TestRuntimeCostLimit(t *testing.T) {
	doc := goodFramework + "provider_rule: 'provider.attrs.exists(k, k.startsWith(\"zz\"))'\n"
	f, err := ParseFramework("fw.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	task := &Task{Name: "t", Framework: "t", Resources: Resources{"cpu": 1}, Command: []string{"x"}}
	if err := task.Validate(); err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{}
	for i := range 50_000 {
		attrs[fmt.Sprintf("a%d", i)] = "v"
	}
	p := &Provider{ID: "huge", Frameworks: []string{f.ID()}, Attrs: attrs, Free: map[string]float64{"cpu": 4}}
	ev := f.Evaluate(task, p, now)
	if ev.OK || len(ev.Failures) != 1 || !strings.Contains(ev.Failures[0].Detail, "cost limit exceeded") {
		t.Fatalf("want one cost-limit failure, got %d: %.300s", len(ev.Failures), ev.Failures)
	}
	if s := ev.Failures[0].String(); len(s) > 1000 || !strings.Contains(s, "...(49992 more)") {
		t.Errorf("explanation of a huge advert is not truncated (%d bytes): %.300s", len(s), s)
	}
	small := &Provider{ID: "small", Frameworks: []string{f.ID()}, Attrs: map[string]string{"zzz": "1"}, Free: map[string]float64{"cpu": 4}}
	if ev := f.Evaluate(task, small, now); !ev.OK {
		t.Fatalf("small advert should pass: %+v", ev.Failures)
	}
}

func TestHostileDocuments(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		sentinel error
	}{
		{"deep nesting", strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000), ErrWrongType},
		{"deep mapping", strings.Repeat("a: {", 2000) + strings.Repeat("}", 2000), ErrUnknownField},
		{"too large", "name: t\ndescription: " + strings.Repeat("x", MaxDocumentSize) + "\n", ErrTooLarge},
		{"deep cel", goodFramework + "provider_rule: '" + strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200) + "'\n", ErrExprSyntax},
		{"long cel", goodFramework + "provider_rule: '" + strings.Repeat("true && ", 600) + "true'\n", ErrExprSyntax},
		{"binary", "\x00\x01\x02\xff", ErrSyntax},
		{"empty", "", ErrMissing},
		{"null", "null", ErrMissing},
		{"scalar", "42", ErrWrongType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFramework("x", []byte(tt.doc))
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("got %v, want %v", err, tt.sentinel)
			}
		})
	}
}
