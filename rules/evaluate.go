package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/rules/bill"
)

// Provider is the view of one provider that the agent fills from its advert.
type Provider struct {
	ID         string
	Drivers    []string
	Attrs      map[string]string  // region, zone, labels...
	Frameworks []string           // framework ids adhered to ("default" is implied for all)
	Total      map[string]float64 // by class, base units: cpu cores, memory/storage MiB, gpu count
	Free       map[string]float64
	Prices     map[string]int64 // micros per unit-hour by class, for the framework being evaluated
	LatencyMS  float64
	Running    int // tasks running now (spread uses it)
}

// Submitter is whoever submitted a task: a peer id and its attributes.
type Submitter struct {
	ID    string
	Attrs map[string]string
}

// Failure is one reason a provider cannot take a task.
type Failure struct {
	Rule   string `json:"rule"` // "framework", "provider rule", "constraint[0]", "driver", "capacity", "price"
	Expr   string `json:"expr,omitempty"`
	Detail string `json:"detail"`
}

// String is the sentence shown to users:
// `provider rule: provider.attrs.region == "cn-north" was false (region="eu-west")`.
func (fl Failure) String() string {
	if fl.Expr != "" {
		return fl.Rule + ": " + fl.Expr + " " + fl.Detail
	}
	return fl.Rule + ": " + fl.Detail
}

// Evaluation is the verdict on one provider, with every failed rule.
type Evaluation struct {
	Provider string    `json:"provider"`
	OK       bool      `json:"ok"`
	Failures []Failure `json:"failures,omitempty"`
	Quote    int64     `json:"quote"` // micros per hour
}

// Placement is the outcome of filtering and ranking providers.
type Placement struct {
	Ranked   []Scored     `json:"ranked"` // eligible, best first
	Rejected []Evaluation `json:"rejected"`
	// Unevaluated counts providers not evaluated: the round had found
	// placement.sample eligible ones before it reached them.
	Unevaluated int `json:"unevaluated,omitempty"`
}

// Bid is a provider's answer to a call for proposals.
type Bid struct {
	Provider string `json:"provider"`
	Price    int64  `json:"price"` // quoted micros per hour
}

// Usage is what a finished attempt consumed.
type Usage struct {
	CPUSeconds, WallSeconds float64
}

// Admit checks a task against the framework before negotiation: the task
// names this framework, every resource has a template and is in range,
// operations are allowed, retries within the SLA, the deadline is ahead,
// max price reaches the framework's lowest prices, and the admission rule
// passes for the submitter. Errors are an *ErrorList positioned in the task.
func (f *Framework) Admit(t *Task, sub Submitter, now time.Time) error {
	f.mustValid()
	if t.c == nil {
		if err := t.Validate(); err != nil {
			return err
		}
	}
	e := t.errs()
	if !f.Matches(t.Framework) {
		e.add("framework", ErrFramework, "task names framework %q, not %s@%s (%s)", t.Framework, f.Name, f.Version, f.ID())
	}
	for _, class := range sortedKeys(t.Resources) {
		v := t.Resources[class]
		tmpl, ok := f.template(class)
		if !ok {
			e.add("resources."+class, ErrFramework, "framework %s has no template %q; it offers %s", f.Name, class, strings.Join(sortedKeys(f.Templates), ", "))
			continue
		}
		r, unit := f.c.ranges[tmpl], f.Templates[tmpl].Unit
		if v < r[0] {
			e.add("resources."+class, ErrOutOfRange, "%s %s is below the framework minimum %s", num(v), unit, f.Templates[tmpl].Min)
		}
		if r[1] > 0 && v > r[1] {
			e.add("resources."+class, ErrOutOfRange, "%s %s is above the framework maximum %s", num(v), unit, f.Templates[tmpl].Max)
		}
	}
	for i, op := range t.Operations {
		if !slices.Contains(f.Operations, op) {
			e.add(fmt.Sprintf("operations[%d]", i), ErrFramework, "framework %s does not allow operation %q; it allows %s", f.Name, op, strings.Join(f.Operations, ", "))
		}
	}
	if t.Retries > f.SLA.MaxRetries {
		e.add("retries", ErrOutOfRange, "retries %d is above the framework's max_retries %d", t.Retries, f.SLA.MaxRetries)
	}
	f.checkOutputCap(t, e)
	t.checkDeadline(e, now)
	if t.MaxPrice > 0 {
		if lowest := f.lowestQuote(t); lowest > int64(t.MaxPrice) {
			e.add("max_price", ErrPrice, "max_price %s is below the lowest price framework %s allows for these resources (%s %s/h)", t.MaxPrice, f.Name, Money(lowest), f.Pricing.Currency)
		}
	}
	if f.c.admission != nil {
		v := &vars{task: taskVars(t), submitter: map[string]any{"id": sub.ID, "attrs": orEmpty(sub.Attrs)}, now: now}
		if fl, ok := f.c.admission.check("admission rule", v); !ok {
			e.add("", ErrNotAdmitted, "%s", fl)
		}
	}
	return e.err()
}

// CheckDeadline reports a deadline that has passed at now, positioned in
// the document (Admit checks it too; `task validate` runs it offline so
// that it does not call valid a task every submit refuses).
func (t *Task) CheckDeadline(now time.Time) error {
	e := t.errs()
	t.checkDeadline(e, now)
	return e.err()
}

func (t *Task) checkDeadline(e *errs, now time.Time) {
	if d := t.Deadline.At; !d.IsZero() && !d.After(now) {
		e.add("deadline", ErrDeadline, "deadline %s has passed (now %s)", d.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
}

// lowestQuote is the cheapest hourly price the framework's pricing allows.
func (f *Framework) lowestQuote(t *Task) int64 {
	sum := 0.0
	for class, v := range t.Resources {
		tmpl, _ := f.template(class)
		r := f.Pricing.Prices[tmpl]
		if r.Fixed > 0 {
			sum += float64(r.Fixed) * v
		} else {
			sum += float64(r.Min) * v
		}
	}
	return bill.Clamp(sum)
}

// Evaluate checks one provider for a task and explains every failure:
// framework adherence, provider rule, task constraints, driver kind,
// capacity (free vs requested) and price (quote vs max price).
func (f *Framework) Evaluate(t *Task, p *Provider, now time.Time) Evaluation {
	f.mustValid()
	progs, perrs := t.constraintPrograms()
	return f.evaluate(t, taskVars(t), progs, perrs, p, now)
}

func (f *Framework) evaluate(t *Task, tv map[string]any, progs []*program, perrs []error, p *Provider, now time.Time) Evaluation {
	ev := Evaluation{Provider: p.ID}
	fail := func(fl Failure) { ev.Failures = append(ev.Failures, fl) }
	if !f.Matches(t.Framework) {
		fail(Failure{Rule: "framework", Detail: fmt.Sprintf("task names framework %q, evaluated under %s (%s)", t.Framework, f.Name, f.ID())})
	}
	if f.Name != DefaultName && !slices.Contains(p.Frameworks, f.ID()) {
		fail(Failure{Rule: "framework", Detail: fmt.Sprintf("provider does not adhere to %s@%s (%s)", f.Name, f.Version, f.ID())})
	}
	v := &vars{task: tv, provider: providerVars(p), now: now}
	if f.c.provider != nil {
		if fl, ok := f.c.provider.check("provider rule", v); !ok {
			fail(fl)
		}
	}
	for i, prg := range progs {
		rule := fmt.Sprintf("constraint[%d]", i)
		if perrs[i] != nil {
			fail(Failure{Rule: rule, Expr: t.Constraints[i], Detail: "is invalid: " + perrs[i].Error()})
			continue
		}
		if fl, ok := prg.check(rule, v); !ok {
			fail(fl)
		}
	}
	if t.Driver != "" && t.Driver != "any" && !slices.Contains(p.Drivers, t.Driver) {
		fail(Failure{Rule: "driver", Detail: fmt.Sprintf("task needs driver %s, provider has %s", t.Driver, render(orEmptyList(p.Drivers)))})
	}
	for _, class := range sortedKeys(t.Resources) {
		if need, free := t.Resources[class], p.Free[class]; free < need {
			fail(Failure{Rule: "capacity", Detail: fmt.Sprintf("%s needs %s, free %s", class, num(need), num(free))})
		}
	}
	quote, pf := f.Quote(t, p)
	ev.Quote = quote
	for _, d := range pf {
		fail(Failure{Rule: "price", Detail: d})
	}
	if t.MaxPrice > 0 && quote > int64(t.MaxPrice) {
		fail(Failure{Rule: "price", Detail: fmt.Sprintf("quote %s %s/h is above max price %s", Money(quote), f.Pricing.Currency, t.MaxPrice)})
	}
	ev.OK = len(ev.Failures) == 0
	return ev
}

// Quote is the hourly price (micros) of the task on p under the framework's
// pricing: fixed prices win, else the provider's price, which must lie in
// the framework's range. Violations are returned as explanations.
func (f *Framework) Quote(t *Task, p *Provider) (int64, []string) {
	sum := 0.0
	var bad []string
	for _, class := range sortedKeys(t.Resources) {
		v := t.Resources[class]
		tmpl, _ := f.template(class)
		r := f.Pricing.Prices[tmpl]
		if r.Fixed > 0 {
			sum += float64(r.Fixed) * v
			continue
		}
		price, has := p.Prices[class]
		if (r.Min > 0 || r.Max > 0) && (price < int64(r.Min) || (r.Max > 0 && price > int64(r.Max))) {
			if !has {
				bad = append(bad, fmt.Sprintf("provider has no price for %s; framework range is %s..%s", class, r.Min, maxStr(r.Max)))
			} else {
				bad = append(bad, fmt.Sprintf("provider price for %s %s is outside the framework range %s..%s", class, Money(price), r.Min, maxStr(r.Max)))
			}
		}
		sum += float64(price) * v
	}
	return bill.Clamp(sum), bad
}

func maxStr(m Money) string {
	if m == 0 {
		return "any"
	}
	return m.String()
}

// Place filters providers (Evaluate) and ranks the eligible ones with the
// framework's strategy, best first, ties broken by provider id. The caller
// sends calls for proposals to the first Placement.Candidates.
func (f *Framework) Place(t *Task, ps []*Provider, now time.Time) Placement {
	return f.PlaceFor(t, "", ps, now)
}

// PlaceFor is Place with ties among equally scored providers broken by
// key (a task's id) as well as the task's hash: many tasks of one
// document (an array of alike tasks) spread over equal providers instead
// of all asking the same few, while one task always sees one order.
//
// With more than placement.sample providers, it evaluates them in an
// order drawn from the task's hash and key (the order its ties are broken
// in) and stops once it has placement.sample eligible ones, which it
// ranks: the cost of a round stays bounded in a mesh of thousands (a
// provider's evaluation is ~4 µs of CEL), and alike tasks draw different
// samples. Providers are evaluated until that many are eligible, so a
// task only few providers can run still finds them.
func (f *Framework) PlaceFor(t *Task, key string, ps []*Provider, now time.Time) Placement {
	f.mustValid()
	progs, perrs := t.constraintPrograms()
	tv := taskVars(t)
	var out Placement
	limit := f.Placement.SampleSize()
	cands := make([]Candidate, 0, min(len(ps), limit))
	consider := func(p *Provider) bool {
		ev := f.evaluate(t, tv, progs, perrs, p, now)
		if ev.OK {
			cands = append(cands, Candidate{Provider: p, Quote: ev.Quote})
		} else {
			out.Rejected = append(out.Rejected, ev)
		}
		return len(cands) < limit
	}
	if len(ps) > limit {
		sampled(t, key, ps, consider)
		out.Unevaluated = len(ps) - len(cands) - len(out.Rejected)
	} else {
		for _, p := range ps {
			consider(p)
		}
	}
	out.Ranked = rankFor(f.c.strategy, t, key, cands)
	slices.SortFunc(out.Rejected, func(a, b Evaluation) int { return strings.Compare(a.Provider, b.Provider) })
	return out
}

// RankBids scores bids with the strategy, using each bid's price as the
// quote. ps gives the providers' adverts; a bid from an unknown provider is
// scored with an empty view.
func (f *Framework) RankBids(t *Task, bids []Bid, ps map[string]*Provider) []Scored {
	f.mustValid()
	cands := make([]Candidate, len(bids))
	for i, b := range bids {
		p := ps[b.Provider]
		if p == nil {
			p = &Provider{ID: b.Provider}
		}
		cands[i] = Candidate{Provider: p, Quote: b.Price}
	}
	return rank(f.c.strategy, t, cands)
}

// BillTerms are the settlement section's terms for t, as an agreement
// carries them (the ledger bills the attempt with them when it ends).
func (f *Framework) BillTerms(t *Task) bill.Terms {
	f.mustValid()
	return bill.Terms{
		Basis:        f.Settlement.Basis,
		GranularityS: time.Duration(f.Settlement.Granularity).Seconds(),
		Minimum:      int64(f.Settlement.Minimum),
		Cores:        t.Resources["cpu"],
	}
}

// Bill is what a finished attempt owes, in micros, from the agreed hourly
// quote and measured usage, per the settlement section: basis wall bills
// wall time, basis cpu bills cpu-seconds per requested core (capped at wall
// time); time is rounded up to the granularity; the minimum applies.
func (f *Framework) Bill(t *Task, quote int64, u Usage) int64 {
	terms := f.BillTerms(t)
	return terms.Amount(quote, u.CPUSeconds, u.WallSeconds)
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func taskVars(t *Task) map[string]any {
	return map[string]any{
		"name":      t.Name,
		"resources": map[string]float64(orEmptyF(t.Resources)),
		"labels":    orEmpty(t.Labels),
		"driver":    t.Driver,
		"retries":   int64(t.Retries),
	}
}

func providerVars(p *Provider) map[string]any {
	return map[string]any{
		"id":         p.ID,
		"attrs":      orEmpty(p.Attrs),
		"drivers":    orEmptyList(p.Drivers),
		"total":      orEmptyF(p.Total),
		"free":       orEmptyF(p.Free),
		"frameworks": orEmptyList(p.Frameworks),
		"latency_ms": p.LatencyMS,
		"running":    int64(p.Running),
	}
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func orEmptyF(m map[string]float64) map[string]float64 {
	if m == nil {
		return map[string]float64{}
	}
	return m
}

func orEmptyList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
