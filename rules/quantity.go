package rules

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Base units of the resource classes. Every quantity in a Task or a
// Provider is a float64 in the base unit of its class.
const (
	UnitCores = "cores" // cpu: "2", "0.5", "500m"
	UnitMiB   = "MiB"   // memory, storage: "512Mi", "4GiB", "1G"; a bare number is MiB
	UnitCount = "count" // gpu, gpu:<model>, custom countable classes: whole numbers
)

var classRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}(:[a-z0-9][a-z0-9._-]{0,63})?$`)

// ClassUnit returns the base unit of a resource class and whether the class
// is one whose unit is fixed (cpu, memory, storage, gpu, gpu:<model>).
func ClassUnit(class string) (unit string, fixed bool) {
	switch {
	case class == "cpu":
		return UnitCores, true
	case class == "memory", class == "storage":
		return UnitMiB, true
	case class == "gpu", strings.HasPrefix(class, "gpu:"):
		return UnitCount, true
	}
	return UnitCount, false
}

var byteUnits = map[string]float64{
	"": 1, "Ki": 1.0 / 1024, "KiB": 1.0 / 1024, "Mi": 1, "MiB": 1, "Gi": 1024, "GiB": 1024,
	"Ti": 1024 * 1024, "TiB": 1024 * 1024,
	"K": 1e3 / (1 << 20), "KB": 1e3 / (1 << 20), "M": 1e6 / (1 << 20), "MB": 1e6 / (1 << 20),
	"G": 1e9 / (1 << 20), "GB": 1e9 / (1 << 20), "T": 1e12 / (1 << 20), "TB": 1e12 / (1 << 20),
}

// ParseQuantity reads s ("4GiB", "500m", "2") as a quantity of unit.
func ParseQuantity(unit, s string) (float64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool {
		return (r < '0' || r > '9') && r != '.' && r != '+' && r != '-' && r != 'e' && r != 'E'
	})
	num, suffix := s, ""
	if i >= 0 {
		num, suffix = s[:i], s[i:]
	}
	// "1e3" is a number, but "2E" is not a unit we know; let ParseFloat decide.
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, FieldError{Msg: fmt.Sprintf("%q is not a quantity; write a number with an optional unit, e.g. %s", s, example(unit)), Err: ErrBadValue}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, FieldError{Msg: fmt.Sprintf("%q is not a finite number", s), Err: ErrBadValue}
	}
	if v < 0 {
		return 0, FieldError{Msg: fmt.Sprintf("%q is negative; quantities are zero or more", s), Err: ErrOutOfRange}
	}
	switch unit {
	case UnitCores:
		switch suffix {
		case "":
		case "m":
			v /= 1000
		default:
			return 0, FieldError{Msg: fmt.Sprintf("unit %q is not a cpu unit; write cores (2, 0.5) or millicores (500m)", suffix), Err: ErrBadUnit}
		}
	case UnitMiB:
		f, ok := byteUnits[suffix]
		if !ok {
			return 0, FieldError{Msg: fmt.Sprintf("unit %q is not a size unit; use Ki, Mi, Gi, Ti (or KiB..TiB, K..T, KB..TB), e.g. 512Mi or 4GiB", suffix), Err: ErrBadUnit}
		}
		v *= f
	case UnitCount:
		if suffix != "" {
			return 0, FieldError{Msg: fmt.Sprintf("unit %q is not allowed; this class is a count, write a whole number", suffix), Err: ErrBadUnit}
		}
		if v != math.Trunc(v) {
			return 0, FieldError{Msg: fmt.Sprintf("%q is not a whole number; this class is a count", s), Err: ErrBadValue}
		}
	default:
		return 0, FieldError{Msg: fmt.Sprintf("unit %q is unknown; use cores, MiB or count", unit), Err: ErrBadUnit}
	}
	return v, nil
}

func example(unit string) string {
	switch unit {
	case UnitCores:
		return "2 or 500m"
	case UnitMiB:
		return "512Mi or 4GiB"
	}
	return "1"
}

// Resources are requested quantities by class, in base units. In a document
// each value may carry a unit ("4GiB"); see ParseQuantity.
type Resources map[string]float64

// decodeNode lets the strict decoder read quantities with units.
func (r *Resources) decodeNode(n *yaml.Node, d *decoder, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(path, ErrWrongType, "want a mapping of class to quantity, e.g. cpu: 2, got %s", kindName(n))
		return
	}
	if *r == nil {
		*r = Resources{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		d.pos[p] = k.Line
		switch {
		case k.Kind != yaml.ScalarNode:
			d.add(path, ErrWrongType, "keys must be resource classes, got %s", kindName(k))
			continue
		case !classRE.MatchString(k.Value):
			d.add(p, ErrBadValue, "%q is not a resource class; use cpu, memory, storage, gpu, gpu:<model> or a lower-case name", k.Value)
			continue
		case val.Kind != yaml.ScalarNode || val.Tag == "!!bool" || val.Tag == "!!null":
			d.add(p, ErrWrongType, "want a quantity such as %s, got %s", example(unitOf(k.Value)), kindName(val))
			continue
		}
		if _, dup := (*r)[k.Value]; dup {
			d.add(p, ErrDuplicateField, "class is given twice; keep one")
			continue
		}
		q, err := ParseQuantity(unitOf(k.Value), val.Value)
		if err != nil {
			d.addErr(p, err)
			continue
		}
		(*r)[k.Value] = q
	}
}

func unitOf(class string) string {
	u, _ := ClassUnit(class)
	return u
}

// Money is an amount in micros (1e-6 of the framework's currency). In
// documents it is written in currency units with up to six decimals: "0.5".
type Money int64

// UnmarshalText reads "12", "0.5", "0.000001".
func (m *Money) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 6 {
		return FieldError{Msg: fmt.Sprintf("%q has more than 6 decimals; amounts are counted in millionths", s), Err: ErrBadValue}
	}
	if whole == "" || strings.TrimLeft(whole, "0123456789") != "" || strings.TrimLeft(frac, "0123456789") != "" {
		return FieldError{Msg: fmt.Sprintf("%q is not an amount; write a non-negative decimal such as 0.5", s), Err: ErrBadValue}
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/1_000_000-1 {
		return FieldError{Msg: fmt.Sprintf("%q is too large", s), Err: ErrOutOfRange}
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt((frac + "000000")[:6], 10, 64)
	}
	*m = Money(w*1e6 + f)
	return nil
}

// MarshalText writes the shortest decimal: 500000 → "0.5".
func (m Money) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m Money) String() string {
	sign := ""
	v := int64(m)
	if v < 0 {
		sign, v = "-", -v
	}
	s := fmt.Sprintf("%s%d.%06d", sign, v/1e6, v%1e6)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// Duration is a time.Duration written as "5s", "10m", "1h30m".
type Duration time.Duration

// UnmarshalText parses a non-negative Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return FieldError{Msg: fmt.Sprintf("%q is not a duration; write e.g. 30s, 10m or 1h", b), Err: ErrBadValue}
	}
	if v < 0 {
		return FieldError{Msg: fmt.Sprintf("%q is negative", b), Err: ErrOutOfRange}
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the canonical Go form ("1m0s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Deadline is either an absolute time (RFC 3339) or a duration counted
// from submission ("10m"). The zero Deadline means none.
type Deadline struct {
	At    time.Time
	After time.Duration
}

// IsZero reports whether no deadline is set.
func (d Deadline) IsZero() bool { return d.At.IsZero() && d.After == 0 }

// Resolve returns the absolute deadline for a task submitted at submitted,
// or the zero time when there is none.
func (d Deadline) Resolve(submitted time.Time) time.Time {
	if !d.At.IsZero() {
		return d.At
	}
	if d.After > 0 {
		return submitted.Add(d.After)
	}
	return time.Time{}
}

// UnmarshalText reads "2030-01-02T15:04:05Z" or "10m".
func (d *Deadline) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*d = Deadline{At: t.UTC()}
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return FieldError{Msg: fmt.Sprintf("%q is neither a time (2030-01-02T15:04:05Z) nor a duration from submission (10m)", s), Err: ErrBadValue}
	}
	if v <= 0 {
		return FieldError{Msg: fmt.Sprintf("%q must be a positive duration", s), Err: ErrOutOfRange}
	}
	*d = Deadline{After: v}
	return nil
}

// MarshalText writes the form that was read.
func (d Deadline) MarshalText() ([]byte, error) {
	switch {
	case !d.At.IsZero():
		return []byte(d.At.UTC().Format(time.RFC3339Nano)), nil
	case d.After > 0:
		return []byte(d.After.String()), nil
	}
	return []byte{}, nil
}
