package rules

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors. Every FieldError wraps one of them so callers can
// classify a failure with errors.Is without parsing text.
var (
	ErrSyntax         = errors.New("syntax error")
	ErrUnknownField   = errors.New("unknown field")
	ErrWrongType      = errors.New("wrong type")
	ErrDuplicateField = errors.New("duplicate field")
	ErrMissing        = errors.New("required field missing")
	ErrBadUnit        = errors.New("bad unit")
	ErrBadValue       = errors.New("bad value")
	ErrOutOfRange     = errors.New("out of range")
	ErrUnknownStrat   = errors.New("unknown strategy")
	ErrExprSyntax     = errors.New("expression syntax error")
	ErrExprType       = errors.New("expression type error")
	ErrExprCost       = errors.New("expression over-cost")
	ErrTooLarge       = errors.New("document too large")
	ErrBadSignature   = errors.New("signature invalid")
	ErrIDMismatch     = errors.New("framework id does not match document")
	ErrFramework      = errors.New("task does not follow framework")
	ErrNotAdmitted    = errors.New("admission rule rejected the task")
	ErrDeadline       = errors.New("deadline passed")
	ErrPrice          = errors.New("price not acceptable")
)

// FieldError is one problem in a document, positioned at the field that
// caused it. Line is 0 when the document did not come from text (a
// framework built in Go) or the field is absent.
type FieldError struct {
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	Path string `json:"path,omitempty"`
	Msg  string `json:"msg"`
	Err  error  `json:"-"` // the sentinel this error is an instance of
}

// Error renders "file:line: path: msg", leaving out the parts that are empty.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the sentinel.
func (e FieldError) Unwrap() error { return e.Err }

// ErrorList is every problem found in one document, sorted by line then path.
type ErrorList struct {
	Errors []FieldError `json:"errors"`
}

// Error joins the errors one per line.
func (l *ErrorList) Error() string {
	lines := make([]string, len(l.Errors))
	for i, e := range l.Errors {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the sentinels of all errors to errors.Is.
func (l *ErrorList) Unwrap() []error {
	out := make([]error, len(l.Errors))
	for i, e := range l.Errors {
		out[i] = e
	}
	return out
}

// errs collects FieldErrors for one document; pos maps field paths to lines.
type errs struct {
	file string
	pos  map[string]int
	list []FieldError
}

func newErrs(file string, pos map[string]int) *errs {
	return &errs{file: file, pos: pos}
}

// add records an error at path; the line is that of path or of its nearest
// ancestor that has one.
func (e *errs) add(path string, sentinel error, format string, args ...any) {
	e.list = append(e.list, FieldError{
		File: e.file, Line: lineOf(e.pos, path), Path: path,
		Msg: fmt.Sprintf(format, args...), Err: sentinel,
	})
}

// err returns nil or the sorted *ErrorList.
func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	sort.SliceStable(e.list, func(i, j int) bool {
		if e.list[i].Line != e.list[j].Line {
			return e.list[i].Line < e.list[j].Line
		}
		return e.list[i].Path < e.list[j].Path
	})
	return &ErrorList{Errors: e.list}
}

// lineOf finds the line of path, walking up "a.b[2].c" to "a.b[2]", "a.b", "a".
func lineOf(pos map[string]int, path string) int {
	for path != "" {
		if l, ok := pos[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return pos[""]
}
