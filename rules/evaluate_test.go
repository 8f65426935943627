package rules

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func aiProvider(f *Framework) *Provider {
	return &Provider{
		ID:         "12D3KooWgood",
		Drivers:    []string{"kubernetes"},
		Attrs:      map[string]string{"region": "cn-north"},
		Frameworks: []string{f.ID()},
		Total:      map[string]float64{"cpu": 64, "memory": 512 * 1024, "gpu:a100": 8},
		Free:       map[string]float64{"cpu": 32, "memory": 256 * 1024, "gpu:a100": 8},
		Prices:     map[string]int64{"cpu": 100_000, "memory": 10, "gpu:a100": 10_000_000},
		LatencyMS:  20,
	}
}

func failureStrings(ev Evaluation) []string {
	out := make([]string, len(ev.Failures))
	for i, f := range ev.Failures {
		out[i] = f.String()
	}
	return out
}

func TestEvaluateExplains(t *testing.T) {
	f := mustFramework(t, "framework-ai.yaml")
	task := mustTask(t, "task-gpu.yaml")
	// quote = 16 × 0.1 + 131072 × 0.00001 + 4 × 10 = 42.91072 CNY/h
	const goodQuote = 42_910_720
	tests := []struct {
		name   string
		change func(p *Provider)
		want   []string
	}{
		{"eligible", func(*Provider) {}, nil},
		{"region", func(p *Provider) { p.Attrs["region"] = "eu-west" }, []string{
			`provider rule: provider.attrs.region in ["cn-north", "cn-east"] && provider.latency_ms < 200.0 was false (latency_ms=20, region="eu-west")`,
			`constraint[0]: provider.attrs.region == "cn-north" was false (region="eu-west")`,
		}},
		{"region missing", func(p *Provider) { delete(p.Attrs, "region") }, []string{
			`provider rule: provider.attrs.region in ["cn-north", "cn-east"] && provider.latency_ms < 200.0 failed: no such key: region (latency_ms=20, region=<missing>)`,
			`constraint[0]: provider.attrs.region == "cn-north" failed: no such key: region (region=<missing>)`,
		}},
		{"capacity", func(p *Provider) { p.Free["gpu:a100"] = 2; p.Free["cpu"] = 8 }, []string{
			`constraint[1]: provider.free["gpu:a100"] >= 4.0 was false (gpu:a100=2)`,
			"capacity: cpu needs 16, free 8",
			"capacity: gpu:a100 needs 4, free 2",
		}},
		{"driver", func(p *Provider) { p.Drivers = []string{"slurm", "local"} }, []string{
			`driver: task needs driver kubernetes, provider has ["slurm", "local"]`,
		}},
		{"framework", func(p *Provider) { p.Frameworks = nil }, []string{
			"framework: provider does not adhere to ai@1.0 (" + f.ID() + ")",
		}},
		{"price range", func(p *Provider) { p.Prices["gpu:a100"] = 40_000_000 }, []string{
			"price: provider price for gpu:a100 40 is outside the framework range 5..30",
			"price: quote 162.91072 CNY/h is above max price 120",
		}},
		{"no price", func(p *Provider) { delete(p.Prices, "gpu:a100") }, []string{
			"price: provider has no price for gpu:a100; framework range is 5..30",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := aiProvider(f)
			tt.change(p)
			ev := f.Evaluate(task, p, now)
			got := failureStrings(ev)
			if !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Fatalf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if ev.OK != (len(tt.want) == 0) || ev.Provider != p.ID {
				t.Errorf("ok %v provider %q", ev.OK, ev.Provider)
			}
			if tt.name == "eligible" && ev.Quote != goodQuote {
				t.Errorf("quote %d, want %d", ev.Quote, goodQuote)
			}
		})
	}
}

func TestEvaluateDefaultFramework(t *testing.T) {
	f := DefaultFramework()
	task := mustTask(t, "task-shell.yaml")
	p := &Provider{ID: "p", Drivers: []string{"local"}, Free: map[string]float64{"cpu": 1, "memory": 100}}
	ev := f.Evaluate(task, p, now)
	want := []string{"capacity: memory needs 256, free 100"}
	if got := failureStrings(ev); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A task naming another framework does not adhere to the default one.
	other := mustTask(t, "task-slurm.yaml")
	ev = f.Evaluate(other, p, now)
	if len(ev.Failures) == 0 || ev.Failures[0].Rule != "framework" {
		t.Fatalf("want a framework failure, got %q", failureStrings(ev))
	}
}

func TestAdmit(t *testing.T) {
	hpc := mustFramework(t, "framework-hpc.yaml")
	member := Submitter{ID: "12D3KooWsub", Attrs: map[string]string{"org": "consortium"}}
	tests := []struct {
		name     string
		edit     func(*Task)
		sub      Submitter
		sentinel error
		path     string
		msg      string
	}{
		{"ok", func(*Task) {}, member, nil, "", ""},
		{"admission", func(*Task) {}, Submitter{ID: "x", Attrs: map[string]string{"org": "rival"}}, ErrNotAdmitted, "", `admission rule: submitter.attrs.org in ["consortium", "partner"] && task.resources.cpu <= 1024.0 was false (cpu=64, org="rival")`},
		{"above max", func(t *Task) { t.Resources["cpu"] = 10000 }, member, ErrOutOfRange, "resources.cpu", "10000 cores is above the framework maximum 4096"},
		{"below min", func(t *Task) { t.Resources["memory"] = 10 }, member, ErrOutOfRange, "resources.memory", "10 MiB is below the framework minimum 1Gi"},
		{"no template", func(t *Task) { t.Resources["gpu"] = 1 }, member, ErrFramework, "resources.gpu", `framework hpc has no template "gpu"`},
		{"operation", func(t *Task) { t.Operations = []string{"run", "results"} }, member, ErrFramework, "operations[1]", `does not allow operation "results"`},
		{"retries", func(t *Task) { t.Retries = 3 }, member, ErrOutOfRange, "retries", "above the framework's max_retries 2"},
		{"deadline", func(t *Task) { t.Deadline = Deadline{At: now.Add(-time.Hour)} }, member, ErrDeadline, "deadline", "has passed"},
		{"max price", func(t *Task) { t.MaxPrice = 1_000_000 }, member, ErrPrice, "max_price", "max_price 1 is below the lowest price framework hpc allows for these resources (4.51072 CNY/h)"},
		{"framework", func(t *Task) { t.Framework = "ai" }, member, ErrFramework, "framework", `task names framework "ai", not hpc@2.1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := mustTask(t, "task-slurm.yaml")
			tt.edit(task)
			if err := task.Validate(); err != nil {
				t.Fatal(err)
			}
			err := hpc.Admit(task, tt.sub, now)
			if tt.sentinel == nil {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			var list *ErrorList
			if !errors.As(err, &list) || !errors.Is(err, tt.sentinel) {
				t.Fatalf("want %v in an *ErrorList, got %v", tt.sentinel, err)
			}
			found := false
			for _, fe := range list.Errors {
				found = found || (fe.Path == tt.path && strings.Contains(fe.Msg, tt.msg))
			}
			if !found {
				t.Fatalf("no error at %q containing %q in:\n%v", tt.path, tt.msg, err)
			}
		})
	}
}

func TestAdmitPositionsInTaskFile(t *testing.T) {
	f := DefaultFramework()
	task, err := ParseTask("big.yaml", []byte("name: big\nresources:\n  cpu: 2\n  fpga: 1\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Admit(task, Submitter{}, now)
	if err == nil || !strings.HasPrefix(err.Error(), `big.yaml:4: resources.fpga: framework default has no template "fpga"`) {
		t.Fatalf("got %v", err)
	}
}

func TestBill(t *testing.T) {
	wall := mustFramework(t, "framework-general.yaml") // wall basis, 1s granularity, minimum 0.001
	cpu := mustFramework(t, "framework-hpc.yaml")      // cpu basis, 1m granularity, minimum 0.01
	task := &Task{Name: "b", Resources: Resources{"cpu": 4}, Command: []string{"x"}}
	if err := task.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		f     *Framework
		quote int64
		u     Usage
		want  int64
	}{
		{"wall one hour", wall, 2_000_000, Usage{WallSeconds: 3600, CPUSeconds: 10}, 2_000_000},
		{"wall rounds up to a second", wall, 3_600_000, Usage{WallSeconds: 1.2}, 2_000},
		{"wall minimum", wall, 1, Usage{WallSeconds: 1}, 1_000},
		{"cpu half busy", cpu, 4_000_000, Usage{WallSeconds: 3600, CPUSeconds: 2 * 3600}, 2_000_000},
		{"cpu capped at wall", cpu, 4_000_000, Usage{WallSeconds: 3600, CPUSeconds: 8 * 3600}, 4_000_000},
		{"cpu rounds up to a minute", cpu, 3_600_000, Usage{WallSeconds: 100, CPUSeconds: 4 * 61}, 120_000},
		{"cpu minimum", cpu, 3_600_000, Usage{}, 10_000},
		{"negative usage", wall, 3_600_000, Usage{WallSeconds: -5}, 1_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Bill(task, tt.quote, tt.u); got != tt.want {
				t.Fatalf("bill %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPlaceRanksAndRejects(t *testing.T) {
	f := mustFramework(t, "framework-ai.yaml")
	task := mustTask(t, "task-gpu.yaml")
	var ps []*Provider
	for i := range 6 {
		p := aiProvider(f)
		p.ID = fmt.Sprintf("p%d", i)
		p.Prices["gpu:a100"] = int64(5_000_000 + i*1_000_000)
		ps = append(ps, p)
	}
	ps[2].Attrs["region"] = "eu-west"
	ps[4].Free["gpu:a100"] = 0
	pl := f.Place(task, ps, now)
	var ranked []string
	for _, s := range pl.Ranked {
		ranked = append(ranked, s.Provider)
	}
	if want := []string{"p0", "p1", "p3", "p5"}; !reflect.DeepEqual(ranked, want) {
		t.Fatalf("ranked %v, want %v (cheapest first: price weight 0.6, equal load and latency)", ranked, want)
	}
	if len(pl.Rejected) != 2 || pl.Rejected[0].Provider != "p2" || pl.Rejected[1].Provider != "p4" {
		t.Fatalf("rejected %+v", pl.Rejected)
	}
	if again := f.Place(task, ps, now); !reflect.DeepEqual(again, pl) {
		t.Fatal("Place is not deterministic")
	}
}

// Many tasks of one document placed on equal providers: PlaceFor with
// each task's id spreads their first choices (Place alone sends them all
// to the same provider, and under load every broker asked the same three
// and was declined); one task id always sees one order.
func TestPlaceForSpreadsAlikeTasksOverEqualProviders(t *testing.T) {
	f := DefaultFramework()
	task, err := ParseTask("array.yaml", []byte("name: member\nresources: {cpu: 1, memory: 64Mi}\ncommand: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ps []*Provider
	for i := range 10 {
		res := map[string]float64{"cpu": 16, "memory": 16 << 30}
		ps = append(ps, &Provider{ID: fmt.Sprintf("p%02d", i), Frameworks: []string{f.ID()}, Total: res, Free: res})
	}
	first := func(key string) string {
		pl := f.PlaceFor(task, key, ps, now)
		if len(pl.Ranked) != len(ps) {
			t.Fatalf("%d of %d equal providers ranked: %+v", len(pl.Ranked), len(ps), pl.Rejected)
		}
		return pl.Ranked[0].Provider
	}
	unkeyed := map[string]bool{}
	keyed := map[string]bool{}
	for i := range 50 {
		unkeyed[f.Place(task, ps, now).Ranked[0].Provider] = true
		id := fmt.Sprintf("task-%d", i)
		got := first(id)
		keyed[got] = true
		if again := first(id); again != got {
			t.Fatalf("task %s ranked %s first, then %s", id, got, again)
		}
	}
	if len(unkeyed) != 1 {
		t.Fatalf("Place without a key put one document first on %d providers; want one order", len(unkeyed))
	}
	if len(keyed) < 5 {
		t.Fatalf("50 task ids put first only %d of 10 equal providers: %v", len(keyed), keyed)
	}
}
