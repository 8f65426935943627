package rules

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
)

// Candidate is one eligible provider with its quote for the task.
type Candidate struct {
	Provider *Provider
	Quote    int64 // micros per hour
}

// Strategy scores candidates for a task; higher is better. It must be
// deterministic: the same task and candidates give the same scores. The
// caller sorts by score and breaks ties by provider id.
type Strategy interface {
	Name() string
	Score(t *Task, cands []Candidate) []float64 // one score per candidate, same order
}

// Factory builds a strategy from the framework's placement.params. Errors
// should be FieldErrors whose Path names the parameter.
type Factory func(params map[string]string) (Strategy, error)

// Registry maps strategy names to factories.
type Registry struct {
	m map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Factory{}} }

// Builtin returns a new registry holding lowest-price, least-loaded,
// binpack, spread, weighted and random.
func Builtin() *Registry {
	r := NewRegistry()
	r.m["lowest-price"] = noParams(lowestPrice{})
	r.m["least-loaded"] = noParams(leastLoaded{})
	r.m["binpack"] = noParams(binpack{})
	r.m["spread"] = noParams(spread{})
	r.m["weighted"] = newWeighted
	r.m["random"] = newRandom
	return r
}

// Register adds a strategy; names are unique.
func (r *Registry) Register(name string, f Factory) error {
	if _, ok := r.m[name]; ok {
		return fmt.Errorf("strategy %q is already registered", name)
	}
	r.m[name] = f
	return nil
}

// Lookup finds a factory by name.
func (r *Registry) Lookup(name string) (Factory, bool) {
	f, ok := r.m[name]
	return f, ok
}

// Names lists registered strategies, sorted.
func (r *Registry) Names() []string { return sortedKeys(r.m) }

// Scored is a ranked candidate.
type Scored struct {
	Provider string  `json:"provider"`
	Score    float64 `json:"score"`
	Quote    int64   `json:"quote"`
}

// rank scores and sorts candidates: best first. Ties go by a hash of the
// task and the provider id: one task always sees the same order, and
// tasks spread over equal providers instead of all picking the first.
func rank(s Strategy, t *Task, cands []Candidate) []Scored { return rankFor(s, t, "", cands) }

// rankFor is rank with ties broken by key as well as the task's hash.
func rankFor(s Strategy, t *Task, key string, cands []Candidate) []Scored {
	scores := s.Score(t, cands)
	seed := tieSeed(t, key)
	type keyed struct {
		Scored
		tie uint64
	}
	ks := make([]keyed, len(cands))
	for i, c := range cands {
		sc := scores[i]
		if math.IsNaN(sc) {
			sc = math.Inf(-1)
		}
		ks[i] = keyed{Scored{Provider: c.Provider.ID, Score: sc, Quote: c.Quote}, tieFrom(seed, c.Provider.ID)}
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].Score != ks[j].Score {
			return ks[i].Score > ks[j].Score
		}
		if ks[i].tie != ks[j].tie {
			return ks[i].tie < ks[j].tie
		}
		return ks[i].Provider < ks[j].Provider
	})
	out := make([]Scored, len(ks))
	for i, k := range ks {
		out[i] = k.Scored
	}
	return out
}

// sampled yields ps in the order a placement samples them for t (by the
// tie-break key: a hash of the task, and key, with each provider id),
// stopping when yield returns false. It orders lazily (a heap): a round
// that finds its sample early pays O(n) for the keys, not a sort.
func sampled(t *Task, key string, ps []*Provider, yield func(*Provider) bool) {
	seed := tieSeed(t, key)
	h := make(tieHeap, len(ps))
	for i, p := range ps {
		h[i] = tieKeyed{p, tieFrom(seed, p.ID)}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		if !yield(heap.Pop(&h).(tieKeyed).p) {
			return
		}
	}
}

type tieKeyed struct {
	p   *Provider
	tie uint64
}

// tieHeap is a min-heap of providers by tie key, then id.
type tieHeap []tieKeyed

func (h tieHeap) Len() int { return len(h) }
func (h tieHeap) Less(i, j int) bool {
	if h[i].tie != h[j].tie {
		return h[i].tie < h[j].tie
	}
	return h[i].p.ID < h[j].p.ID
}
func (h tieHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *tieHeap) Push(x any)   { *h = append(*h, x.(tieKeyed)) }
func (h *tieHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// tieSeed is the FNV-1a state after the task's hash, then (when key is
// set) a 0 byte and key, then a 0 byte: a provider's tie-break key is
// tieFrom(seed, its id).
func tieSeed(t *Task, key string) uint64 {
	th := t.Hash()
	if key != "" {
		th += "\x00" + key
	}
	return tieFrom(fnvOffset, th) * fnvPrime // the 0 byte: h ^= 0, h *= prime
}

// tieFrom continues FNV-1a state h over s.
func tieFrom(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func noParams(s Strategy) Factory {
	return func(params map[string]string) (Strategy, error) {
		for _, k := range sortedKeys(params) {
			return nil, FieldError{Path: k, Msg: fmt.Sprintf("strategy %s takes no parameter %q", s.Name(), k), Err: ErrBadValue}
		}
		return s, nil
	}
}

// lowestPrice prefers the cheapest quote.
type lowestPrice struct{}

func (lowestPrice) Name() string { return "lowest-price" }
func (lowestPrice) Score(_ *Task, cs []Candidate) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		out[i] = -float64(c.Quote)
	}
	return out
}

// freeAfter is the mean fraction of capacity left free after placing t,
// over cpu, memory and every class t requests that the provider has.
func freeAfter(t *Task, p *Provider) float64 {
	sum, n := 0.0, 0
	add := func(class string) {
		total := p.Total[class]
		if total <= 0 {
			return
		}
		sum += (p.Free[class] - t.Resources[class]) / total
		n++
	}
	add("cpu")
	add("memory")
	for _, class := range sortedKeys(t.Resources) {
		if class != "cpu" && class != "memory" {
			add(class)
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// leastLoaded prefers the most capacity left free.
type leastLoaded struct{}

func (leastLoaded) Name() string { return "least-loaded" }
func (leastLoaded) Score(t *Task, cs []Candidate) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		out[i] = freeAfter(t, c.Provider)
	}
	return out
}

// binpack prefers the least capacity left free (fill providers up).
type binpack struct{}

func (binpack) Name() string { return "binpack" }
func (binpack) Score(t *Task, cs []Candidate) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		out[i] = -freeAfter(t, c.Provider)
	}
	return out
}

// spread prefers providers running the fewest tasks, then the most free.
type spread struct{}

func (spread) Name() string { return "spread" }
func (spread) Score(t *Task, cs []Candidate) []float64 {
	out := make([]float64, len(cs))
	for i, c := range cs {
		// freeAfter is at most 1, so it only orders equal task counts.
		out[i] = -float64(c.Provider.Running) + 0.5*math.Max(-1, math.Min(1, freeAfter(t, c.Provider)))
	}
	return out
}

// weighted blends normalized price, load and latency (lower is better for each).
type weighted struct {
	price, load, latency float64
}

func newWeighted(params map[string]string) (Strategy, error) {
	w := weighted{price: 0.5, load: 0.3, latency: 0.2}
	for _, k := range sortedKeys(params) {
		var dst *float64
		switch k {
		case "price":
			dst = &w.price
		case "load":
			dst = &w.load
		case "latency":
			dst = &w.latency
		default:
			return nil, FieldError{Path: k, Msg: fmt.Sprintf("weighted takes price, load and latency, not %q", k), Err: ErrBadValue}
		}
		v, err := strconv.ParseFloat(params[k], 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, FieldError{Path: k, Msg: fmt.Sprintf("weight %q must be a number >= 0", params[k]), Err: ErrBadValue}
		}
		*dst = v
	}
	if w.price+w.load+w.latency == 0 {
		return nil, FieldError{Msg: "at least one weight must be above 0", Err: ErrBadValue}
	}
	return w, nil
}

func (weighted) Name() string { return "weighted" }
func (w weighted) Score(t *Task, cs []Candidate) []float64 {
	price := normalizer(cs, func(c Candidate) float64 { return float64(c.Quote) })
	lat := normalizer(cs, func(c Candidate) float64 { return c.Provider.LatencyMS })
	out := make([]float64, len(cs))
	for i, c := range cs {
		load := 1 - math.Max(0, math.Min(1, freeAfter(t, c.Provider)))
		out[i] = -(w.price*price(float64(c.Quote)) + w.load*load + w.latency*lat(c.Provider.LatencyMS))
	}
	return out
}

// normalizer maps values of f over cs to [0, 1] (min → 0); all equal → 0.
func normalizer(cs []Candidate, f func(Candidate) float64) func(float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range cs {
		v := f(c)
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return func(v float64) float64 {
		if hi <= lo {
			return 0
		}
		return (v - lo) / (hi - lo)
	}
}

// random orders candidates by a hash of (seed, task, provider): a fixed
// shuffle per task, reproducible everywhere.
type random struct{ seed uint64 }

func newRandom(params map[string]string) (Strategy, error) {
	r := random{}
	for _, k := range sortedKeys(params) {
		if k != "seed" {
			return nil, FieldError{Path: k, Msg: fmt.Sprintf("random takes seed, not %q", k), Err: ErrBadValue}
		}
		v, err := strconv.ParseUint(params[k], 10, 64)
		if err != nil {
			return nil, FieldError{Path: k, Msg: fmt.Sprintf("seed %q must be a non-negative integer", params[k]), Err: ErrBadValue}
		}
		r.seed = v
	}
	return r, nil
}

func (random) Name() string { return "random" }
func (r random) Score(t *Task, cs []Candidate) []float64 {
	th := t.Hash()
	out := make([]float64, len(cs))
	for i, c := range cs {
		h := fnv.New64a()
		var seed [8]byte
		binary.BigEndian.PutUint64(seed[:], r.seed)
		h.Write(seed[:])
		h.Write([]byte(th))
		h.Write([]byte{0})
		h.Write([]byte(c.Provider.ID))
		out[i] = float64(h.Sum64()>>11) / (1 << 53)
	}
	return out
}
