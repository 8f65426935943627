package bill

import (
	"errors"
	"fmt"
	"math"
)

// Terms is a framework's settlement section as an agreement carries it:
// signed by broker and provider, so neither can change the bill later.
type Terms struct {
	// Basis "wall" bills wall-clock time; "cpu" bills cpu-seconds per
	// requested core, capped at wall time.
	Basis string `json:"basis"`
	// GranularityS rounds billed time up to a multiple, in seconds.
	GranularityS float64 `json:"granularity_s,omitempty"`
	// Minimum is the smallest charge for an attempt, in micros.
	Minimum int64 `json:"minimum,omitempty"`
	// Cores are the cores the task requested (basis cpu).
	Cores float64 `json:"cores,omitempty"`
}

// Basis values.
const (
	BasisWall = "wall"
	BasisCPU  = "cpu"
)

// MaxAmount bounds any single bill, in micros.
const MaxAmount = math.MaxInt64 / 2

// Check names the first bad field of t.
func (t *Terms) Check() error {
	switch {
	case t.Basis != BasisWall && t.Basis != BasisCPU:
		return fmt.Errorf("bill.basis %q is unknown; use wall or cpu", t.Basis)
	case !finite(t.GranularityS) || t.GranularityS < 0:
		return errors.New("bill.granularity_s must be a finite number of seconds >= 0")
	case t.Minimum < 0 || t.Minimum > MaxAmount:
		return fmt.Errorf("bill.minimum must be 0 to %d micros", int64(MaxAmount))
	case !finite(t.Cores) || t.Cores < 0:
		return errors.New("bill.cores must be a finite number >= 0")
	}
	return nil
}

// Amount is what an attempt owes, in micros, for an hourly price in
// micros and the usage it reported: billed seconds (wall time, or for
// basis cpu cpu-seconds per requested core capped at wall time) rounded
// up to the granularity, times price / 3600, rounded to the nearest
// micro, at least the minimum, at most MaxAmount.
func (t *Terms) Amount(price int64, cpuSeconds, wallSeconds float64) int64 {
	secs := math.Max(0, nonNaN(wallSeconds))
	if t.Basis == BasisCPU && t.Cores > 0 {
		used := math.Max(0, nonNaN(cpuSeconds)) / t.Cores
		if secs > 0 {
			used = math.Min(used, secs)
		}
		secs = used
	}
	if g := t.GranularityS; g > 0 {
		secs = float64(math.Ceil(secs/g)) * g
	}
	amount := Clamp(float64(float64(price)*secs) / 3600)
	return max(amount, t.Minimum)
}

// Clamp rounds a money amount to whole micros, 0 for NaN or below,
// MaxAmount at most.
func Clamp(v float64) int64 {
	switch {
	case math.IsNaN(v) || v <= 0:
		return 0
	case v >= MaxAmount:
		return MaxAmount
	}
	return int64(math.Round(v))
}

func nonNaN(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
