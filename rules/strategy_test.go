package rules

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func stratProviders() []Candidate {
	mk := func(id string, freeCPU float64, running int, latency float64, quote int64) Candidate {
		return Candidate{Provider: &Provider{
			ID:        id,
			Total:     map[string]float64{"cpu": 16, "memory": 16384},
			Free:      map[string]float64{"cpu": freeCPU, "memory": 8192},
			Running:   running,
			LatencyMS: latency,
		}, Quote: quote}
	}
	return []Candidate{
		mk("a", 4, 5, 10, 300),  // busy, near, mid price
		mk("b", 16, 0, 90, 500), // idle, far, dear
		mk("c", 8, 1, 50, 100),  // half, mid, cheap
		mk("d", 8, 1, 50, 100),  // identical to c: tie broken by hash(task, id)
	}
}

func TestStrategies(t *testing.T) {
	task := &Task{Name: "s", Resources: Resources{"cpu": 2}, Command: []string{"x"}}
	if err := task.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		strategy string
		params   map[string]string
		want     []string
	}{
		{"lowest-price", nil, []string{"c", "d", "a", "b"}},
		{"least-loaded", nil, []string{"b", "c", "d", "a"}},
		{"binpack", nil, []string{"a", "c", "d", "b"}},
		{"spread", nil, []string{"b", "c", "d", "a"}},
		{"weighted", map[string]string{"price": "1", "load": "0", "latency": "0"}, []string{"c", "d", "a", "b"}},
		{"weighted", map[string]string{"price": "0", "load": "0", "latency": "1"}, []string{"a", "c", "d", "b"}},
		{"weighted", map[string]string{"price": "0", "load": "1", "latency": "0"}, []string{"b", "c", "d", "a"}},
		{"weighted", nil, []string{"c", "d", "a", "b"}},
		{"random", map[string]string{"seed": "1"}, nil},
	}
	reg := Builtin()
	for _, tt := range tests {
		t.Run(tt.strategy, func(t *testing.T) {
			factory, ok := reg.Lookup(tt.strategy)
			if !ok {
				t.Fatalf("%s not registered", tt.strategy)
			}
			s, err := factory(tt.params)
			if err != nil {
				t.Fatal(err)
			}
			got := ids(rank(s, task, stratProviders()))
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ranking %v, want %v", got, tt.want)
			}
			// Same inputs, same ranking, whatever the input order.
			rev := stratProviders()
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			if again := ids(rank(s, task, rev)); !reflect.DeepEqual(again, got) {
				t.Fatalf("ranking depends on input order: %v vs %v", again, got)
			}
		})
	}
}

func TestRandomStrategy(t *testing.T) {
	reg := Builtin()
	factory, _ := reg.Lookup("random")
	var cands []Candidate
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		cands = append(cands, Candidate{Provider: &Provider{ID: id}})
	}
	order := func(seed, name string) []string {
		s, err := factory(map[string]string{"seed": seed})
		if err != nil {
			t.Fatal(err)
		}
		task := &Task{Name: name, Resources: Resources{"cpu": 1}, Command: []string{"x"}}
		if err := task.Validate(); err != nil {
			t.Fatal(err)
		}
		return ids(rank(s, task, cands))
	}
	if !reflect.DeepEqual(order("7", "t1"), order("7", "t1")) {
		t.Fatal("random is not deterministic for a seed")
	}
	if reflect.DeepEqual(order("7", "t1"), order("8", "t1")) && reflect.DeepEqual(order("7", "t2"), order("7", "t1")) {
		t.Fatal("seed and task do not change the order")
	}
}

func TestStrategyParams(t *testing.T) {
	reg := Builtin()
	tests := []struct {
		strategy string
		params   map[string]string
		path     string
	}{
		{"lowest-price", map[string]string{"x": "1"}, "x"},
		{"weighted", map[string]string{"price": "-1"}, "price"},
		{"weighted", map[string]string{"price": "0", "load": "0", "latency": "0"}, ""},
		{"random", map[string]string{"seed": "abc"}, "seed"},
		{"random", map[string]string{"salt": "1"}, "salt"},
	}
	for _, tt := range tests {
		f, _ := reg.Lookup(tt.strategy)
		_, err := f(tt.params)
		var fe FieldError
		if !errors.As(err, &fe) || fe.Path != tt.path || !errors.Is(err, ErrBadValue) {
			t.Errorf("%s %v: got %v", tt.strategy, tt.params, err)
		}
	}
	if err := reg.Register("binpack", nil); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestRegistryOption(t *testing.T) {
	reg := NewRegistry()
	if err := reg.Register("first", noParams(lowestPrice{})); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFramework("x", []byte(goodFramework), WithRegistry(reg))
	if !errors.Is(err, ErrUnknownStrat) {
		t.Fatalf("lowest-price should be unknown in a custom registry: %v", err)
	}
	doc := []byte("name: t\nversion: \"1\"\ntemplates: {cpu: {unit: cores}}\nplacement: {strategy: first}\n")
	if _, err := ParseFramework("x", doc, WithRegistry(reg)); err != nil {
		t.Fatal(err)
	}
}

func TestRankBids(t *testing.T) {
	f := mustFramework(t, "framework-general.yaml") // least-loaded
	task := mustTask(t, "task-shell.yaml")
	ps := map[string]*Provider{
		"busy": {ID: "busy", Total: map[string]float64{"cpu": 8}, Free: map[string]float64{"cpu": 1}},
		"idle": {ID: "idle", Total: map[string]float64{"cpu": 8}, Free: map[string]float64{"cpu": 8}},
	}
	got := f.RankBids(task, []Bid{{"busy", 10}, {"ghost", 1}, {"idle", 20}}, ps)
	if want := []string{"idle", "busy", "ghost"}; !reflect.DeepEqual(ids(got), want) {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	if got[0].Quote != 20 {
		t.Errorf("bid price not carried as quote: %+v", got[0])
	}
}

// TestTiesSpreadOverEqualProviders: equal providers are ranked in a
// per-task order, so different tasks go first to different providers
// (no herding on the smallest id) while one task always sees one order.
func TestTiesSpreadOverEqualProviders(t *testing.T) {
	var cands []Candidate
	for i := range 10 {
		cands = append(cands, Candidate{Provider: &Provider{
			ID:    fmt.Sprintf("p%02d", i),
			Total: map[string]float64{"cpu": 16, "memory": 16384},
			Free:  map[string]float64{"cpu": 16, "memory": 16384},
		}})
	}
	s, _ := Builtin().Lookup("least-loaded")
	strat, err := s(nil)
	if err != nil {
		t.Fatal(err)
	}
	firsts := map[string]int{}
	for i := range 100 {
		task := &Task{Name: fmt.Sprintf("t%d", i), Resources: Resources{"cpu": 1}, Command: []string{"x"}}
		if err := task.Validate(); err != nil {
			t.Fatal(err)
		}
		got := ids(rank(strat, task, cands))
		if again := ids(rank(strat, task, cands)); !reflect.DeepEqual(got, again) {
			t.Fatalf("task %d ranked %v then %v", i, got, again)
		}
		firsts[got[0]]++
	}
	if len(firsts) < 8 {
		t.Fatalf("100 tasks over 10 equal providers went first to only %d of them: %v", len(firsts), firsts)
	}
}

func ids(s []Scored) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Provider
	}
	return out
}
