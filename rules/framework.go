package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Framework is a rule framework document. Its exported fields are the
// document; ParseFramework (or Validate) fills defaults, checks every field,
// compiles the expressions and the strategy, and fixes the id. Treat a
// validated Framework as immutable; to change one, edit a copy and Validate it
// (which gives it a new id).
type Framework struct {
	Name        string              `yaml:"name" json:"name"`
	Version     string              `yaml:"version" json:"version"`
	Description string              `yaml:"description" json:"description,omitempty"`
	Templates   map[string]Template `yaml:"templates" json:"templates"`
	Operations  []string            `yaml:"operations" json:"operations"`
	// Public lists what anyone in the mesh may do with this framework's
	// tasks besides their submitter, broker and provider: query, logs,
	// results. Empty (the default): only those three parties.
	Public       []string        `yaml:"public" json:"public,omitempty"`
	Admission    string          `yaml:"admission" json:"admission,omitempty"`         // CEL over task, submitter, now
	ProviderRule string          `yaml:"provider_rule" json:"provider_rule,omitempty"` // CEL over task, provider, now
	Placement    PlacementPolicy `yaml:"placement" json:"placement"`
	Pricing      Pricing         `yaml:"pricing" json:"pricing"`
	Settlement   Settlement      `yaml:"settlement" json:"settlement"`
	SLA          SLA             `yaml:"sla" json:"sla"`
	Results      ResultsPolicy   `yaml:"results" json:"results,omitzero"`

	c *compiledFramework
}

// Template is a resource class a task may request, with its unit and range.
type Template struct {
	Unit        string `yaml:"unit" json:"unit"`
	Min         string `yaml:"min" json:"min,omitempty"`
	Max         string `yaml:"max" json:"max,omitempty"`
	Description string `yaml:"description" json:"description,omitempty"`
}

// PlacementPolicy names the strategy and how a negotiation round runs.
type PlacementPolicy struct {
	Strategy   string            `yaml:"strategy" json:"strategy"`
	Params     map[string]string `yaml:"params" json:"params,omitempty"`
	Candidates int               `yaml:"candidates" json:"candidates"`   // CFPs sent per round
	BidTimeout Duration          `yaml:"bid_timeout" json:"bid_timeout"` // how long the broker waits for bids
	// Sample bounds the eligible providers a round ranks (0: DefaultSample):
	// with more known, it evaluates them in an order drawn from the task
	// and stops at Sample eligible. Not filled in by defaults, so the
	// canonical form (and id) of a framework without it is unchanged.
	Sample int `yaml:"sample" json:"sample,omitempty"`
}

// SampleSize is how many eligible providers a round ranks at most.
func (p PlacementPolicy) SampleSize() int {
	if p.Sample > 0 {
		return p.Sample
	}
	return DefaultSample
}

// Pricing sets prices per template class, in micros per unit-hour.
type Pricing struct {
	Currency string               `yaml:"currency" json:"currency"`
	Prices   map[string]PriceRule `yaml:"prices" json:"prices,omitempty"`
}

// PriceRule is either a fixed unit price or a range provider prices must
// fall in. Fixed > 0 wins over the providers' own prices.
type PriceRule struct {
	Fixed Money `yaml:"fixed" json:"fixed,omitempty"`
	Min   Money `yaml:"min" json:"min,omitempty"`
	Max   Money `yaml:"max" json:"max,omitempty"`
}

// Settlement says what usage is billed.
type Settlement struct {
	// Basis "wall": the agreed hourly quote × wall-clock time.
	// Basis "cpu": the quote × cpu-seconds used / requested cores (idle reserved cores are free).
	Basis       string   `yaml:"basis" json:"basis"`
	Minimum     Money    `yaml:"minimum" json:"minimum,omitempty"`         // smallest charge for a started attempt
	Granularity Duration `yaml:"granularity" json:"granularity,omitempty"` // billed time is rounded up to a multiple
}

// SLA bounds start delay and retries.
type SLA struct {
	MaxStartDelay Duration `yaml:"max_start_delay" json:"max_start_delay,omitempty"` // placed → running
	MaxRetries    int      `yaml:"max_retries" json:"max_retries"`                   // most retries a task may ask for
}

type compiledFramework struct {
	id, file  string
	canonical []byte
	pos       map[string]int
	admission *program
	provider  *program
	strategy  Strategy
	ranges    map[string][2]float64 // class → [min, max] in base units; max 0 = none
}

// Defaults filled in by Validate.
const (
	DefaultStrategy   = "least-loaded"
	DefaultCandidates = 3
	DefaultSample     = 64
	DefaultBidTimeout = 5 * time.Second
	DefaultCurrency   = "PCM"
	DefaultName       = "default"
)

// Operations a framework may allow a task to request.
var knownOperations = []string{"run", "cancel", "query", "logs", "results"}

// publicOperations are those a framework may open to everyone (Public).
var publicOperations = []string{"query", "logs", "results"}

// IsPublic reports whether the framework lets anyone do op on its tasks.
func (f *Framework) IsPublic(op string) bool { return slices.Contains(f.Public, op) }

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	currencyRE = regexp.MustCompile(`^[A-Z][A-Z0-9]{1,9}$`)
)

// ParseFramework reads a framework document (YAML or JSON). name is the file
// name shown in error positions. Errors are an *ErrorList.
func ParseFramework(name string, data []byte, opts ...Option) (*Framework, error) {
	f := &Framework{}
	pos, err := decodeStrict(name, data, f)
	if err != nil {
		return nil, err
	}
	if err := f.validate(name, pos, newOptions(opts)); err != nil {
		return nil, err
	}
	return f, nil
}

// DefaultFramework is the framework of tasks that name none: open admission,
// least-loaded placement, no prices, templates cpu, memory, storage, gpu.
func DefaultFramework() *Framework {
	f := &Framework{
		Name: DefaultName, Version: "1",
		Description: "open admission, least-loaded placement, no prices",
		Templates: map[string]Template{
			"cpu":     {Unit: UnitCores},
			"memory":  {Unit: UnitMiB},
			"storage": {Unit: UnitMiB},
			"gpu":     {Unit: UnitCount},
			"gpu:*":   {Unit: UnitCount, Description: "any GPU model"},
		},
		SLA: SLA{MaxRetries: 10},
	}
	if err := f.Validate(); err != nil {
		panic("rules: default framework is invalid: " + err.Error()) // covered by tests
	}
	return f
}

// Validate fills defaults, checks every field, compiles expressions and the
// strategy, and fixes the id. Errors are an *ErrorList.
func (f *Framework) Validate(opts ...Option) error {
	return f.validate("", nil, newOptions(opts))
}

func (f *Framework) validate(file string, pos map[string]int, o options) error {
	f.c = nil
	if pos == nil {
		pos = map[string]int{}
	}
	e := newErrs(file, pos)
	f.defaults()
	if !nameRE.MatchString(f.Name) {
		e.add("name", missingOr(f.Name), "name %q must be 1-64 lower-case letters, digits, '.', '_' or '-'", f.Name)
	}
	if f.Version == "" || len(f.Version) > 32 {
		e.add("version", missingOr(f.Version), "version is required (at most 32 characters), e.g. \"1.0\"")
	}
	c := &compiledFramework{file: file, pos: pos, ranges: map[string][2]float64{}}
	f.checkTemplates(e, c)
	for i, op := range f.Operations {
		if !slices.Contains(knownOperations, op) {
			e.add(fmt.Sprintf("operations[%d]", i), ErrBadValue, "operation %q is unknown; known: %s", op, strings.Join(knownOperations, ", "))
		}
	}
	for i, op := range f.Public {
		if !slices.Contains(publicOperations, op) {
			e.add(fmt.Sprintf("public[%d]", i), ErrBadValue, "operation %q cannot be public; use %s (cancel always needs a party)", op, strings.Join(publicOperations, ", "))
		}
	}
	c.admission = compileField(e, "admission", scopeAdmission, f.Admission)
	c.provider = compileField(e, "provider_rule", scopeProvider, f.ProviderRule)
	f.checkPlacement(e, c, o)
	f.checkPricing(e)
	if f.Settlement.Basis != "wall" && f.Settlement.Basis != "cpu" {
		e.add("settlement.basis", ErrBadValue, "basis %q is unknown; use wall or cpu", f.Settlement.Basis)
	}
	if f.SLA.MaxRetries < 0 || f.SLA.MaxRetries > 100 {
		e.add("sla.max_retries", ErrOutOfRange, "max_retries %d must be 0..100", f.SLA.MaxRetries)
	}
	if err := e.err(); err != nil {
		return err
	}
	c.canonical = f.canonical()
	c.id = frameworkID(c.canonical)
	f.c = c
	return nil
}

func missingOr(v string) error {
	if v == "" {
		return ErrMissing
	}
	return ErrBadValue
}

func (f *Framework) defaults() {
	if len(f.Operations) == 0 {
		f.Operations = []string{"run", "cancel", "query"}
	}
	if f.Placement.Strategy == "" {
		f.Placement.Strategy = DefaultStrategy
	}
	if f.Placement.Candidates == 0 {
		f.Placement.Candidates = DefaultCandidates
	}
	if f.Placement.BidTimeout == 0 {
		f.Placement.BidTimeout = Duration(DefaultBidTimeout)
	}
	if f.Pricing.Currency == "" {
		f.Pricing.Currency = DefaultCurrency
	}
	if f.Settlement.Basis == "" {
		f.Settlement.Basis = "wall"
	}
}

func (f *Framework) checkTemplates(e *errs, c *compiledFramework) {
	if len(f.Templates) == 0 {
		e.add("templates", ErrMissing, "templates are required; declare at least cpu, e.g. cpu: {unit: cores, max: \"64\"}")
	}
	for _, class := range sortedKeys(f.Templates) {
		t := f.Templates[class]
		p := "templates." + class
		name := strings.TrimSuffix(class, ":*")
		if !classRE.MatchString(name) {
			e.add(p, ErrBadValue, "%q is not a resource class; use cpu, memory, storage, gpu, gpu:<model>, gpu:* or a lower-case name", class)
			continue
		}
		want, fixed := ClassUnit(name)
		switch {
		case t.Unit != UnitCores && t.Unit != UnitMiB && t.Unit != UnitCount:
			e.add(p+".unit", ErrBadUnit, "unit %q is unknown; use cores, MiB or count", t.Unit)
			continue
		case fixed && t.Unit != want:
			e.add(p+".unit", ErrBadUnit, "unit %q does not fit class %s; use %s", t.Unit, class, want)
			continue
		}
		var r [2]float64
		for i, s := range []string{t.Min, t.Max} {
			if s == "" {
				continue
			}
			q, err := ParseQuantity(t.Unit, s)
			if err != nil {
				fe := err.(FieldError)
				e.add(p+"."+[]string{"min", "max"}[i], fe.Err, "%s", fe.Msg)
				continue
			}
			r[i] = q
		}
		if r[1] > 0 && r[0] > r[1] {
			e.add(p+".min", ErrOutOfRange, "min %s is above max %s", t.Min, t.Max)
		}
		c.ranges[class] = r
	}
}

func compileField(e *errs, path string, sc scope, src string) *program {
	if strings.TrimSpace(src) == "" {
		return nil
	}
	p, err := compileExpr(sc, src)
	if err != nil {
		var fe FieldError
		if asFieldError(err, &fe) {
			e.add(path, fe.Err, "%s", fe.Msg)
		} else {
			e.add(path, ErrExprType, "%v", err)
		}
		return nil
	}
	return p
}

func (f *Framework) checkPlacement(e *errs, c *compiledFramework, o options) {
	pl := f.Placement
	factory, ok := o.registry.Lookup(pl.Strategy)
	if !ok {
		e.add("placement.strategy", ErrUnknownStrat, "strategy %q is unknown; known: %s", pl.Strategy, strings.Join(o.registry.Names(), ", "))
	} else {
		s, err := factory(pl.Params)
		if err != nil {
			var fe FieldError
			if asFieldError(err, &fe) {
				e.add(join("placement.params", fe.Path), fe.Err, "%s", fe.Msg)
			} else {
				e.add("placement.params", ErrBadValue, "%v", err)
			}
		}
		c.strategy = s
	}
	if pl.Candidates < 1 || pl.Candidates > 1000 {
		e.add("placement.candidates", ErrOutOfRange, "candidates %d must be 1..1000", pl.Candidates)
	}
	if pl.Sample < 0 || pl.Sample > 1_000_000 {
		e.add("placement.sample", ErrOutOfRange, "sample %d must be 1..1000000 (or left out: %d)", pl.Sample, DefaultSample)
	}
	if pl.BidTimeout > Duration(10*time.Minute) {
		e.add("placement.bid_timeout", ErrOutOfRange, "bid_timeout %s is above 10m", time.Duration(pl.BidTimeout))
	}
}

func (f *Framework) checkPricing(e *errs) {
	if !currencyRE.MatchString(f.Pricing.Currency) {
		e.add("pricing.currency", ErrBadValue, "currency %q must be 2-10 upper-case letters or digits, e.g. PCM or CNY", f.Pricing.Currency)
	}
	for _, class := range sortedKeys(f.Pricing.Prices) {
		r := f.Pricing.Prices[class]
		p := "pricing.prices." + class
		if _, ok := f.Templates[class]; !ok {
			e.add(p, ErrBadValue, "class %q has no template; add it under templates or remove the price", class)
		}
		switch {
		case r.Fixed > 0 && (r.Min > 0 || r.Max > 0):
			e.add(p, ErrBadValue, "give either fixed or min/max, not both")
		case r.Max > 0 && r.Min > r.Max:
			e.add(p+".min", ErrOutOfRange, "min %s is above max %s", r.Min, r.Max)
		}
	}
}

// ID is the content address: "fw1-" + base32(sha256(Canonical())).
func (f *Framework) ID() string {
	if f.c == nil {
		return frameworkID(f.canonical())
	}
	return f.c.id
}

// Canonical is the JSON encoding used for the id and signatures: fields in
// declaration order, map keys sorted, defaults filled, no HTML escaping.
func (f *Framework) Canonical() []byte {
	if f.c == nil {
		return f.canonical()
	}
	return bytes.Clone(f.c.canonical)
}

func (f *Framework) canonical() []byte {
	return canonicalJSON(f)
}

func canonicalJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("rules: canonical encoding: " + err.Error()) // only plain types are encoded
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func frameworkID(canonical []byte) string { return "fw1-" + hashString(canonical) }

func hashString(b []byte) string {
	sum := sha256.Sum256(b)
	return strings.ToLower(b32.EncodeToString(sum[:]))
}

// Strategy returns the compiled placement strategy.
func (f *Framework) Strategy() Strategy {
	f.mustValid()
	return f.c.strategy
}

// Matches reports whether ref (a task's framework field) names f: its id,
// its name, or name@version. "" matches the default framework.
func (f *Framework) Matches(ref string) bool {
	switch ref {
	case "":
		return f.Name == DefaultName
	case f.ID(), f.Name, f.Name + "@" + f.Version:
		return true
	}
	return false
}

func (f *Framework) mustValid() {
	if f.c == nil {
		panic("rules: Framework used before ParseFramework or Validate succeeded")
	}
}

// template finds the template for a class: exact, else "gpu:*" for gpu:<model>.
func (f *Framework) template(class string) (string, bool) {
	if _, ok := f.Templates[class]; ok {
		return class, true
	}
	if i := strings.IndexByte(class, ':'); i > 0 {
		wild := class[:i] + ":*"
		if _, ok := f.Templates[wild]; ok {
			return wild, true
		}
	}
	return "", false
}
