package rules

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustTask(t testing.TB, name string) *Task {
	t.Helper()
	tk, err := ParseTask(name, readExample(t, name))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return tk
}

func TestParseTaskExamples(t *testing.T) {
	tests := []struct {
		file      string
		framework string
		driver    string
		resources Resources
		maxPrice  Money
	}{
		{"task-shell.yaml", "", "local", Resources{"cpu": 0.5, "memory": 256}, 0},
		{"task-slurm.yaml", "hpc", "slurm", Resources{"cpu": 64, "memory": 131072, "storage": 512000}, 10_000_000},
		{"task-gpu.yaml", "ai", "kubernetes", Resources{"cpu": 16, "memory": 131072, "gpu:a100": 4}, 120_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			tk := mustTask(t, tt.file)
			if tk.Framework != tt.framework || tk.Driver != tt.driver || tk.MaxPrice != tt.maxPrice {
				t.Errorf("framework %q driver %q max price %d", tk.Framework, tk.Driver, tk.MaxPrice)
			}
			if len(tk.Resources) != len(tt.resources) {
				t.Errorf("resources %v, want %v", tk.Resources, tt.resources)
			}
			for k, v := range tt.resources {
				if tk.Resources[k] != v {
					t.Errorf("resources[%s] = %g, want %g", k, tk.Resources[k], v)
				}
			}
			again, err := ParseTask("canonical", tk.Canonical())
			if err != nil {
				t.Fatalf("reparse canonical: %v", err)
			}
			if again.Hash() != tk.Hash() || !strings.HasPrefix(tk.Hash(), "task1-") {
				t.Errorf("hash %s after reparse, want %s", again.Hash(), tk.Hash())
			}
		})
	}
}

func TestTaskDeadline(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	shell := mustTask(t, "task-shell.yaml")
	if got := shell.DeadlineAt(now); !got.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("relative deadline %v", got)
	}
	slurm := mustTask(t, "task-slurm.yaml")
	if got := slurm.DeadlineAt(now); !got.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("absolute deadline %v", got)
	}
	none := &Task{}
	if !none.DeadlineAt(now).IsZero() {
		t.Error("no deadline should resolve to zero")
	}
}

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		unit, in string
		want     float64
		err      error
	}{
		{UnitCores, "2", 2, nil},
		{UnitCores, "500m", 0.5, nil},
		{UnitCores, "0.25", 0.25, nil},
		{UnitCores, "4GiB", 0, ErrBadUnit},
		{UnitCores, "-1", 0, ErrOutOfRange},
		{UnitMiB, "512Mi", 512, nil},
		{UnitMiB, "4GiB", 4096, nil},
		{UnitMiB, "1Ti", 1 << 20, nil},
		{UnitMiB, "1Ki", 1.0 / 1024, nil},
		{UnitMiB, "1G", 1e9 / (1 << 20), nil},
		{UnitMiB, "100", 100, nil},
		{UnitMiB, "4 GX", 0, ErrBadUnit},
		{UnitMiB, "lots", 0, ErrBadValue},
		{UnitMiB, "NaN", 0, ErrBadValue},
		{UnitMiB, "1e400", 0, ErrBadValue},
		{UnitCount, "4", 4, nil},
		{UnitCount, "1.5", 0, ErrBadValue},
		{UnitCount, "2m", 0, ErrBadUnit},
		{"furlongs", "2", 0, ErrBadUnit},
	}
	for _, tt := range tests {
		t.Run(tt.unit+"/"+tt.in, func(t *testing.T) {
			got, err := ParseQuantity(tt.unit, tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %g, want %g", got, tt.want)
			}
		})
	}
}

func TestMoney(t *testing.T) {
	tests := []struct {
		in   string
		want Money
		out  string
		err  error
	}{
		{"0.5", 500_000, "0.5", nil},
		{"12", 12_000_000, "12", nil},
		{"0.000001", 1, "0.000001", nil},
		{"0", 0, "0", nil},
		{"0.1234567", 0, "", ErrBadValue},
		{"-1", 0, "", ErrBadValue},
		{"1e3", 0, "", ErrBadValue},
		{"99999999999999999", 0, "", ErrOutOfRange},
	}
	for _, tt := range tests {
		var m Money
		err := m.UnmarshalText([]byte(tt.in))
		if !errors.Is(err, tt.err) {
			t.Errorf("%q: err %v, want %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && (m != tt.want || m.String() != tt.out) {
			t.Errorf("%q: got %d (%s), want %d (%s)", tt.in, m, m, tt.want, tt.out)
		}
	}
}

const goodTask = `name: t
resources: {cpu: 1}
command: [true]
`

func TestBadTasks(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		sentinel error
		path     string
		line     int
		msg      string
	}{
		{"unknown field", goodTask + "priority: high\n", ErrUnknownField, "priority", 4, `unknown field "priority"`},
		{"wrong type", goodTask + "retries: twice\n", ErrWrongType, "retries", 4, `want an integer, got "twice"`},
		{"bad unit", "name: t\nresources: {cpu: 1, memory: 4GX}\ncommand: [true]\n", ErrBadUnit, "resources.memory", 2, `unit "GX" is not a size unit`},
		{"cpu with bytes", "name: t\nresources: {cpu: 4GiB}\ncommand: [true]\n", ErrBadUnit, "resources.cpu", 2, "not a cpu unit"},
		{"resource list", "name: t\nresources: {cpu: [1]}\ncommand: [true]\n", ErrWrongType, "resources.cpu", 2, "want a quantity"},
		{"zero resource", "name: t\nresources: {cpu: 0}\ncommand: [true]\n", ErrOutOfRange, "resources.cpu", 2, "must be positive"},
		{"no resources", "name: t\ncommand: [true]\n", ErrMissing, "resources", 0, "resources are required"},
		{"bad class", "name: t\nresources: {CPU: 1}\ncommand: [true]\n", ErrBadValue, "resources.CPU", 2, "not a resource class"},
		{"two payloads", goodTask + "image: busybox\n", ErrBadValue, "command", 3, "exactly one of command, script or image (got 2)"},
		{"no payload", "name: t\nresources: {cpu: 1}\n", ErrMissing, "command", 0, "(got 0)"},
		{"unknown driver", goodTask + "driver: docker\n", ErrBadValue, "driver", 4, `driver "docker" is unknown`},
		{"image on local", "name: t\nresources: {cpu: 1}\nimage: busybox\ndriver: local\n", ErrBadValue, "image", 3, "cannot run an image"},
		{"constraint syntax", goodTask + "constraints: ['provider.attrs.zone ==']\n", ErrExprSyntax, "constraints[0]", 4, "CEL syntax error"},
		{"constraint type", goodTask + "constraints: ['true', 'provider.latency_ms + now']\n", ErrExprType, "constraints[1]", 4, "CEL type error"},
		{"constraint over-cost", goodTask + "constraints: ['provider.drivers.exists(a, provider.drivers.exists(b, provider.drivers.exists(c, a == b + c)))']\n", ErrExprCost, "constraints[0]", 4, "over-cost"},
		{"bad deadline", goodTask + "deadline: tomorrow\n", ErrBadValue, "deadline", 4, "neither a time"},
		{"bad max price", goodTask + "max_price: cheap\n", ErrBadValue, "max_price", 4, "not an amount"},
		{"bad env name", goodTask + "env: {1X: y}\n", ErrBadValue, "env.1X", 4, "not a variable name"},
		{"negative retries", goodTask + "retries: -1\n", ErrOutOfRange, "retries", 4, "must be 0..100"},
		{"bad operation", goodTask + "operations: [run, explode]\n", ErrBadValue, "operations[1]", 4, `operation "explode" is unknown`},
		{"json wrong type", `{"name": "t", "resources": {"cpu": 1}, "command": "true"}`, ErrWrongType, "command", 1, "want a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTask("task.yaml", []byte(tt.doc))
			var list *ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("want *ErrorList, got %v", err)
			}
			var hit *FieldError
			for i := range list.Errors {
				if list.Errors[i].Path == tt.path && errors.Is(list.Errors[i], tt.sentinel) {
					hit = &list.Errors[i]
				}
			}
			if hit == nil {
				t.Fatalf("no %v error at %q: %v", tt.sentinel, tt.path, err)
			}
			if tt.line > 0 && hit.Line != tt.line {
				t.Errorf("line %d, want %d: %v", hit.Line, tt.line, hit)
			}
			if !strings.Contains(hit.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", hit.Msg, tt.msg)
			}
		})
	}
}

func TestTaskBuiltInGo(t *testing.T) {
	tk := &Task{Name: "go", Resources: Resources{"cpu": 2}, Command: []string{"true"}}
	if err := tk.Validate(); err != nil {
		t.Fatal(err)
	}
	if tk.Driver != "any" || len(tk.Operations) != 1 || tk.Operations[0] != "run" {
		t.Errorf("defaults not filled: driver %q operations %v", tk.Driver, tk.Operations)
	}
	parsed, err := ParseTask("x", tk.Canonical())
	if err != nil || parsed.Hash() != tk.Hash() {
		t.Fatalf("round trip: %v, %s vs %s", err, parsed.Hash(), tk.Hash())
	}
	tk2 := &Task{Name: "go", Resources: Resources{"cpu": 3}, Command: []string{"true"}}
	_ = tk2.Validate()
	if tk2.Hash() == tk.Hash() {
		t.Error("different tasks share a hash")
	}
}
