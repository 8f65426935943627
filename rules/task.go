package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Task is a task document. Parse it with ParseTask or build it in Go and
// call Validate; treat it as immutable afterwards.
type Task struct {
	Name        string            `yaml:"name" json:"name"`
	Framework   string            `yaml:"framework" json:"framework,omitempty"` // name, name@version or id; "" = default
	Resources   Resources         `yaml:"resources" json:"resources"`
	Driver      string            `yaml:"driver" json:"driver"` // local, slurm, kubernetes, exec, sim or any
	Command     []string          `yaml:"command" json:"command,omitempty"`
	Script      string            `yaml:"script" json:"script,omitempty"`
	Image       string            `yaml:"image" json:"image,omitempty"`
	Env         map[string]string `yaml:"env" json:"env,omitempty"`
	Constraints []string          `yaml:"constraints" json:"constraints,omitempty"` // CEL over task, provider, now
	MaxPrice    Money             `yaml:"max_price" json:"max_price,omitempty"`     // micros per hour; 0 = no limit
	Deadline    Deadline          `yaml:"deadline" json:"deadline,omitzero"`
	Retries     int               `yaml:"retries" json:"retries,omitempty"`
	Labels      map[string]string `yaml:"labels" json:"labels,omitempty"`
	Operations  []string          `yaml:"operations" json:"operations"`
	Outputs     *TaskOutputs      `yaml:"outputs" json:"outputs,omitempty"`
	Inputs      []TaskInput       `yaml:"inputs" json:"inputs,omitempty"`

	c *compiledTask
}

type compiledTask struct {
	file        string
	pos         map[string]int
	constraints []*program
	hash        string
}

// Driver kinds a task may ask for.
var DriverKinds = []string{"local", "slurm", "kubernetes", "exec", "sim", "any"}

var (
	taskNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	labelRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
)

// ParseTask reads a task document (YAML or JSON). name is the file name
// shown in error positions. Errors are an *ErrorList.
func ParseTask(name string, data []byte) (*Task, error) {
	t := &Task{}
	pos, err := decodeStrict(name, data, t)
	if err != nil {
		return nil, err
	}
	if err := t.validate(name, pos); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate fills defaults (driver any, operations [run]) and runs the
// checks that need no framework: name, resources positive, exactly one of
// command, script or image, env names, constraints compile, retries.
func (t *Task) Validate() error {
	pos, file := map[string]int{}, ""
	if t.c != nil {
		pos, file = t.c.pos, t.c.file
	}
	return t.validate(file, pos)
}

func (t *Task) validate(file string, pos map[string]int) error {
	t.c = nil
	e := newErrs(file, pos)
	if t.Driver == "" {
		t.Driver = "any"
	}
	if len(t.Operations) == 0 {
		t.Operations = []string{"run"}
	}
	if !taskNameRE.MatchString(t.Name) {
		e.add("name", missingOr(t.Name), "name %q must be 1-128 letters, digits, '.', '_' or '-'", t.Name)
	}
	if len(t.Resources) == 0 {
		e.add("resources", ErrMissing, "resources are required, e.g. resources: {cpu: 1, memory: 512Mi}")
	}
	for _, class := range sortedKeys(t.Resources) {
		v := t.Resources[class]
		switch {
		case !classRE.MatchString(class):
			e.add("resources."+class, ErrBadValue, "%q is not a resource class", class)
		case !(v > 0) || v > 1e15:
			e.add("resources."+class, ErrOutOfRange, "%g must be positive (and finite); remove the class to request none", v)
		}
	}
	if !slices.Contains(DriverKinds, t.Driver) {
		e.add("driver", ErrBadValue, "driver %q is unknown; use one of %s", t.Driver, strings.Join(DriverKinds, ", "))
	}
	set := 0
	for _, given := range []bool{len(t.Command) > 0, t.Script != "", t.Image != ""} {
		if given {
			set++
		}
	}
	if set != 1 {
		e.add("command", missingIf(set == 0), "give exactly one of command, script or image (got %d)", set)
	}
	if t.Image != "" && (t.Driver == "local" || t.Driver == "slurm") {
		e.add("image", ErrBadValue, "driver %s cannot run an image; use kubernetes, exec, sim or any, or give command/script", t.Driver)
	}
	for _, k := range sortedKeys(t.Env) {
		if !envNameRE.MatchString(k) {
			e.add("env."+k, ErrBadValue, "%q is not a variable name (letters, digits, '_', not starting with a digit)", k)
		}
	}
	for _, k := range sortedKeys(t.Labels) {
		if !labelRE.MatchString(k) || len(t.Labels[k]) > 256 {
			e.add("labels."+k, ErrBadValue, "label %q must be 1-63 of letters, digits, '.', '_', '/', '-' with a value of at most 256 bytes", k)
		}
	}
	if t.Retries < 0 || t.Retries > 100 {
		e.add("retries", ErrOutOfRange, "retries %d must be 0..100", t.Retries)
	}
	for i, op := range t.Operations {
		if !slices.Contains(knownOperations, op) {
			e.add(fmt.Sprintf("operations[%d]", i), ErrBadValue, "operation %q is unknown; known: %s", op, strings.Join(knownOperations, ", "))
		}
	}
	t.checkFiles(e)
	c := &compiledTask{file: file, pos: pos}
	for i, src := range t.Constraints {
		p := compileField(e, fmt.Sprintf("constraints[%d]", i), scopeProvider, src)
		if p == nil && strings.TrimSpace(src) == "" {
			e.add(fmt.Sprintf("constraints[%d]", i), ErrMissing, "constraint is empty; remove it")
		}
		c.constraints = append(c.constraints, p)
	}
	if err := e.err(); err != nil {
		return err
	}
	c.hash = "task1-" + hashString(canonicalJSON(t))
	t.c = c
	return nil
}

func missingIf(b bool) error {
	if b {
		return ErrMissing
	}
	return ErrBadValue
}

// Canonical is the JSON encoding the hash is taken over; ParseTask reads it back.
func (t *Task) Canonical() []byte { return canonicalJSON(t) }

// Hash is the content address of the task ("task1-" + base32 sha256 of
// Canonical); agreements bind to it.
func (t *Task) Hash() string {
	if t.c != nil {
		return t.c.hash
	}
	return "task1-" + hashString(canonicalJSON(t))
}

// DeadlineAt resolves the deadline against the submission time; zero = none.
func (t *Task) DeadlineAt(submitted time.Time) time.Time { return t.Deadline.Resolve(submitted) }

// constraintPrograms returns the compiled constraints, compiling them if
// the task was not validated (without storing: Evaluate must not mutate).
func (t *Task) constraintPrograms() ([]*program, []error) {
	if t.c != nil {
		return t.c.constraints, make([]error, len(t.c.constraints))
	}
	ps := make([]*program, len(t.Constraints))
	es := make([]error, len(t.Constraints))
	for i, src := range t.Constraints {
		ps[i], es[i] = compileExpr(scopeProvider, src)
	}
	return ps, es
}

// pos returns the line of a task field, for errors from Admit.
func (t *Task) errs() *errs {
	if t.c == nil {
		return newErrs("", map[string]int{})
	}
	return newErrs(t.c.file, t.c.pos)
}
