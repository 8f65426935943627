package rules

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
)

// Limits on expressions. CostLimit bounds both the checker's worst-case
// estimate (checked once, at load) and the work done by one evaluation.
const (
	CostLimit        = 100_000
	MaxExprLength    = 4096
	maxExprRecursion = 64
	// estimatedMaxSize is the size the cost checker assumes for maps, lists
	// and strings it cannot see (adverts are at most 64 KiB, so attribute maps
	// and lists stay small).
	estimatedMaxSize = 256
)

// Which variables an expression may use.
type scope int

const (
	scopeAdmission scope = iota // task, submitter, now
	scopeProvider               // task, provider, now
)

var envs struct {
	once sync.Once
	m    map[scope]*cel.Env
	err  error
}

// env returns the shared, immutable CEL environment for a scope.
func env(s scope) (*cel.Env, error) {
	envs.once.Do(func() {
		envs.m = map[scope]*cel.Env{}
		dyn := cel.MapType(cel.StringType, cel.DynType)
		common := []cel.EnvOption{
			cel.Variable("task", dyn),
			cel.Variable("now", cel.TimestampType),
			cel.ParserExpressionSizeLimit(MaxExprLength),
			cel.ParserRecursionLimit(maxExprRecursion),
		}
		for sc, extra := range map[scope]cel.EnvOption{
			scopeAdmission: cel.Variable("submitter", dyn),
			scopeProvider:  cel.Variable("provider", dyn),
		} {
			e, err := cel.NewEnv(append(common, extra)...)
			if err != nil {
				envs.err = fmt.Errorf("rules: build cel environment: %w", err)
				return
			}
			envs.m[sc] = e
		}
	})
	return envs.m[s], envs.err
}

// program is one compiled, type-checked, cost-checked boolean expression.
type program struct {
	src  string
	prg  cel.Program
	refs [][]string // selected fields, e.g. [provider attrs region], for explanations
}

// sizeEstimator tells the cost checker how big unseen values can be.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if n.ComputedSize() != nil {
		return nil
	}
	return &cost.SizeEstimate{Min: 0, Max: estimatedMaxSize}
}

func (sizeEstimator) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// compileExpr parses, type-checks and cost-checks src. Errors are
// FieldErrors without position (the caller adds it).
func compileExpr(sc scope, src string) (*program, error) {
	e, err := env(sc)
	if err != nil {
		return nil, err
	}
	if len(src) > MaxExprLength {
		return nil, FieldError{Msg: fmt.Sprintf("expression is %d bytes; the limit is %d", len(src), MaxExprLength), Err: ErrExprSyntax}
	}
	parsed, iss := e.Parse(src)
	if iss.Err() != nil {
		return nil, FieldError{Msg: "CEL syntax error: " + oneLine(iss.Err().Error()), Err: ErrExprSyntax}
	}
	checked, iss := e.Check(parsed)
	if iss.Err() != nil {
		return nil, FieldError{Msg: "CEL type error: " + oneLine(iss.Err().Error()), Err: ErrExprType}
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, FieldError{Msg: fmt.Sprintf("CEL type error: expression gives %s; it must give a bool (true = pass)", t), Err: ErrExprType}
	}
	est, err := e.EstimateCost(checked, sizeEstimator{})
	if err != nil {
		return nil, FieldError{Msg: fmt.Sprintf("CEL over-cost: cost cannot be estimated: %v", err), Err: ErrExprCost}
	}
	if est.Max > CostLimit {
		return nil, FieldError{Msg: fmt.Sprintf("CEL over-cost: worst-case cost %s is above the limit %d; avoid nested loops over lists and maps", fmtCost(est.Max), CostLimit), Err: ErrExprCost}
	}
	prg, err := e.Program(checked, cel.CostLimit(CostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, FieldError{Msg: "CEL program: " + oneLine(err.Error()), Err: ErrExprType}
	}
	return &program{src: src, prg: prg, refs: selectPaths(checked.NativeRep().Expr())}, nil
}

func fmtCost(c uint64) string {
	if c == ^uint64(0) {
		return "unbounded"
	}
	return strconv.FormatUint(c, 10)
}

// oneLine keeps the messages of a CEL error and drops its source excerpts:
// "ERROR: <input>:1:5: msg\n | src\n | ....^" → "1:5: msg".
func oneLine(s string) string {
	var msgs []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		line = strings.TrimPrefix(strings.TrimSpace(line), "ERROR: <input>:")
		if line != "" {
			msgs = append(msgs, line)
		}
	}
	return strings.Join(msgs, "; ")
}

// selectPaths lists the variable fields an expression reads
// (provider.attrs.region, provider.attrs["zone"]), longest paths only.
func selectPaths(root ast.Expr) [][]string {
	var all [][]string
	ast.PreOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		if p := pathOf(e); len(p) > 1 {
			all = append(all, p)
		}
	}))
	seen := map[string]bool{}
	var out [][]string
	for _, p := range all {
		key := strings.Join(p, "\x00")
		if seen[key] {
			continue
		}
		prefix := false
		for _, q := range all {
			if len(q) > len(p) && strings.HasPrefix(strings.Join(q, "\x00"), key+"\x00") {
				prefix = true
				break
			}
		}
		seen[key] = true
		if !prefix {
			out = append(out, p)
		}
	}
	return out
}

// pathOf returns [var field...] for a chain of selects or constant-string
// indexes rooted at a variable, or nil.
func pathOf(e ast.Expr) []string {
	switch e.Kind() {
	case ast.IdentKind:
		switch id := e.AsIdent(); id {
		case "task", "provider", "submitter":
			return []string{id}
		}
	case ast.SelectKind:
		s := e.AsSelect()
		if p := pathOf(s.Operand()); p != nil {
			return append(p, s.FieldName())
		}
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() == "_[_]" && len(c.Args()) == 2 && c.Args()[1].Kind() == ast.LiteralKind {
			if key, ok := c.Args()[1].AsLiteral().Value().(string); ok {
				if p := pathOf(c.Args()[0]); p != nil {
					return append(p, key)
				}
			}
		}
	}
	return nil
}

// vars is the activation of one evaluation.
type vars struct {
	task, provider, submitter map[string]any
	now                       time.Time
}

func (v *vars) ResolveName(name string) (any, bool) {
	switch name {
	case "task":
		return v.task, v.task != nil
	case "provider":
		return v.provider, v.provider != nil
	case "submitter":
		return v.submitter, v.submitter != nil
	case "now":
		return types.Timestamp{Time: v.now}, true
	}
	return nil, false
}

func (v *vars) Parent() interpreter.Activation { return nil }

// errNotBool is returned when a dyn-typed expression gives a non-bool.
var errNotBool = errors.New("expression did not give a bool")

// eval runs the program; a false result or an error is a failed rule.
func (p *program) eval(v *vars) (bool, error) {
	out, _, err := p.prg.Eval(v)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w (got %v)", errNotBool, out.Value())
	}
	return b, nil
}

// check evaluates and, on failure, explains with the values of the fields
// the expression reads: `was false (region="eu-west")`.
func (p *program) check(rule string, v *vars) (Failure, bool) {
	ok, err := p.eval(v)
	if ok {
		return Failure{}, true
	}
	detail := "was false"
	if err != nil {
		detail = "failed: " + oneLine(err.Error())
	}
	if vals := p.values(v); vals != "" {
		detail += " (" + vals + ")"
	}
	return Failure{Rule: rule, Expr: p.src, Detail: detail}, false
}

// values renders the referenced fields as `name=value, ...`.
func (p *program) values(v *vars) string {
	names := make([]string, len(p.refs))
	count := map[string]int{}
	for i, ref := range p.refs {
		names[i] = ref[len(ref)-1]
		count[names[i]]++
	}
	parts := make([]string, 0, len(p.refs))
	for i, ref := range p.refs {
		name := names[i]
		if count[name] > 1 {
			name = strings.Join(ref, ".")
		}
		val, _ := v.ResolveName(ref[0])
		parts = append(parts, name+"="+render(lookup(val, ref[1:])))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

type missing struct{}

func lookup(v any, path []string) any {
	for _, k := range path {
		switch m := v.(type) {
		case map[string]any:
			x, ok := m[k]
			if !ok {
				return missing{}
			}
			v = x
		case map[string]string:
			x, ok := m[k]
			if !ok {
				return missing{}
			}
			v = x
		case map[string]float64:
			x, ok := m[k]
			if !ok {
				return missing{}
			}
			v = x
		default:
			return missing{}
		}
	}
	return v
}

// Explanations show at most this many bytes of a string and entries of a
// list or map, so a hostile advert cannot blow up an explanation.
const (
	maxRenderString  = 120
	maxRenderEntries = 8
)

func render(v any) string {
	switch x := v.(type) {
	case missing:
		return "<missing>"
	case string:
		if len(x) > maxRenderString {
			return strconv.Quote(x[:maxRenderString]) + fmt.Sprintf("...(%d bytes)", len(x))
		}
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []string:
		q := make([]string, 0, min(len(x), maxRenderEntries+1))
		for i, s := range x {
			if i == maxRenderEntries {
				q = append(q, fmt.Sprintf("...(%d more)", len(x)-i))
				break
			}
			q = append(q, render(s))
		}
		return "[" + strings.Join(q, ", ") + "]"
	case map[string]string:
		return "{" + strings.Join(renderMap(x), ", ") + "}"
	case map[string]float64:
		return "{" + strings.Join(renderMap(x), ", ") + "}"
	}
	return fmt.Sprint(v)
}

func renderMap[V any](m map[string]V) []string {
	out := make([]string, 0, min(len(m), maxRenderEntries+1))
	for i, k := range sortedKeys(m) {
		if i == maxRenderEntries {
			out = append(out, fmt.Sprintf("...(%d more)", len(m)-i))
			break
		}
		out = append(out, render(k)+": "+render(any(m[k])))
	}
	return out
}
