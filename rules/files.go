package rules

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"
)

// TaskOutputs are the files a task leaves for its submitter: paths or
// globs (path.Match syntax) relative to its work dir, a directory
// including everything below it. The provider packs them into one
// archive whose digest its final ledger event carries.
type TaskOutputs struct {
	Paths []string `yaml:"paths" json:"paths"`
	// MaxSize bounds the files' content; zero: the framework's
	// results.max_size, else the provider's own limit.
	MaxSize Size `yaml:"max_size" json:"max_size,omitzero"`
}

// TaskInput is another task's results, named by digest, unpacked into
// the work dir below Dir before the task starts.
type TaskInput struct {
	Digest string `yaml:"digest" json:"digest"`
	Dir    string `yaml:"dir" json:"dir,omitempty"`
}

// ResultsPolicy is what a framework allows for its tasks' outputs.
type ResultsPolicy struct {
	// MaxSize caps outputs.max_size; zero: no cap beyond the providers'.
	MaxSize Size `yaml:"max_size" json:"max_size,omitzero"`
}

// MaxInputs bounds the inputs one task may name.
const MaxInputs = 32

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkFiles validates outputs and inputs.
func (t *Task) checkFiles(e *errs) {
	if o := t.Outputs; o != nil {
		if len(o.Paths) == 0 {
			e.add("outputs.paths", ErrMissing, "outputs.paths is empty; name at least one file or glob in the work dir, e.g. [out/*.csv], or drop outputs")
		}
		for i, p := range o.Paths {
			if msg := badRelPath(p, true); msg != "" {
				e.add(fmt.Sprintf("outputs.paths[%d]", i), ErrBadValue, "%s", msg)
			}
		}
	}
	if len(t.Inputs) > MaxInputs {
		e.add("inputs", ErrOutOfRange, "%d inputs; at most %d", len(t.Inputs), MaxInputs)
	}
	for i, in := range t.Inputs {
		if !digestRE.MatchString(in.Digest) {
			e.add(fmt.Sprintf("inputs[%d].digest", i), missingOr(in.Digest), "digest %q is not sha256:<64 lower-case hex digits>; copy it from `pcm-agent tasks status` of the task that made it", in.Digest)
		}
		if in.Dir != "" {
			if msg := badRelPath(in.Dir, false); msg != "" {
				e.add(fmt.Sprintf("inputs[%d].dir", i), ErrBadValue, "%s", msg)
			}
		}
	}
}

// badRelPath explains why p is not a relative path inside the work dir
// ("" when it is one).
func badRelPath(p string, glob bool) string {
	switch {
	case p == "":
		return "path is empty; name a path inside the work dir"
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("%q is absolute; give a path relative to the work dir", p)
	case strings.Contains("/"+p+"/", "/../"):
		return fmt.Sprintf("%q leaves the work dir (..); give a path inside it", p)
	}
	if _, err := path.Match(p, ""); glob && err != nil {
		return fmt.Sprintf("%q is not a valid glob: %v", p, err)
	}
	return ""
}

// checkOutputCap reports a task asking for more output than f allows.
func (f *Framework) checkOutputCap(t *Task, e *errs) {
	if t.Outputs == nil || f.Results.MaxSize == 0 || t.Outputs.MaxSize <= f.Results.MaxSize {
		return
	}
	e.add("outputs.max_size", ErrOutOfRange, "max_size %s is above framework %s's results.max_size %s; ask for at most that", t.Outputs.MaxSize, f.Name, f.Results.MaxSize)
}

// OutputLimit is the most output bytes t may leave under f: the smaller
// of its own max_size and the framework's cap (0: neither sets one).
func (f *Framework) OutputLimit(t *Task) int64 {
	if t.Outputs == nil {
		return 0
	}
	lim := int64(t.Outputs.MaxSize)
	if c := int64(f.Results.MaxSize); c > 0 && (lim == 0 || c < lim) {
		lim = c
	}
	return lim
}

// Size is a number of bytes, written with a size unit as in resources
// ("64Mi", "1GiB"; a bare number is MiB).
type Size int64

// UnmarshalText reads a size.
func (s *Size) UnmarshalText(b []byte) error {
	mib, err := ParseQuantity(UnitMiB, string(b))
	if err != nil {
		return err
	}
	if mib*(1<<20) > math.MaxInt64/2 {
		return FieldError{Msg: fmt.Sprintf("%q is too large", b), Err: ErrOutOfRange}
	}
	*s = Size(math.Round(mib * (1 << 20)))
	return nil
}

// MarshalText writes Mi, Ki or a fraction of Ki, whichever is exact.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	switch {
	case s%(1<<20) == 0:
		return fmt.Sprintf("%dMi", s>>20)
	case s%1024 == 0:
		return fmt.Sprintf("%dKi", s>>10)
	}
	return fmt.Sprintf("%gKi", float64(s)/1024)
}
