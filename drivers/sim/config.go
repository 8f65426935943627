package sim

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Distribution kinds.
const (
	Fixed   = "fixed"
	Uniform = "uniform"
)

// Distribution is how long simulated tasks run.
type Distribution struct {
	// Kind is "fixed" (always Fixed) or "uniform" (between Min and Max).
	Kind  string           `json:"kind"`
	Fixed drivers.Duration `json:"fixed,omitempty"`
	Min   drivers.Duration `json:"min,omitempty"`
	Max   drivers.Duration `json:"max,omitempty"`
}

// Config configures the simulator.
type Config struct {
	// StateDir holds the journal; empty keeps everything in memory (no
	// Recover across restarts), which is what large benchmarks want.
	StateDir string `json:"state_dir"`
	// Capacity offered; default 16 CPUs and 64 GiB.
	Capacity drivers.Resources `json:"capacity"`
	// Duration of tasks; default fixed 1s.
	Duration Distribution `json:"duration"`
	// FailureProbability is the chance in [0,1] a task fails (exit 1).
	FailureProbability float64 `json:"failure_probability"`
	// Seed makes durations and failures reproducible.
	Seed int64 `json:"seed"`
	// TimeScale: a simulated second takes TimeScale real seconds; default
	// 1, 0.001 runs a thousand times faster than real time.
	TimeScale float64 `json:"time_scale"`
	// Attributes are added to the fingerprint.
	Attributes map[string]string `json:"attributes"`
}

// DefaultConfig returns an in-memory simulator config with defaults.
func DefaultConfig() Config {
	var c Config
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Capacity.CPUs == 0 && c.Capacity.MemoryMB == 0 {
		c.Capacity.CPUs, c.Capacity.MemoryMB = 16, 64<<10
	}
	if c.Duration.Kind == "" {
		c.Duration.Kind = Fixed
		if c.Duration.Fixed == 0 {
			c.Duration.Fixed = drivers.Duration(time.Second)
		}
	}
	if c.TimeScale == 0 {
		c.TimeScale = 1
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Capacity.CPUs < 0 || c.Capacity.MemoryMB < 0 || c.Capacity.DiskMB < 0 || c.Capacity.GPUs < 0:
		return fmt.Errorf("sim: capacity %+v has a negative field; use values >= 0", c.Capacity)
	case c.FailureProbability < 0 || c.FailureProbability > 1:
		return fmt.Errorf("sim: failure_probability is %g; use a value in [0, 1]", c.FailureProbability)
	case c.TimeScale <= 0:
		return fmt.Errorf("sim: time_scale is %g; use a positive number (0.001 = 1000x faster)", c.TimeScale)
	}
	switch c.Duration.Kind {
	case Fixed:
		if c.Duration.Fixed < 0 {
			return fmt.Errorf("sim: duration.fixed is %s; use a duration >= 0", c.Duration.Fixed.D())
		}
	case Uniform:
		if c.Duration.Min < 0 || c.Duration.Max < c.Duration.Min {
			return fmt.Errorf("sim: duration min %s, max %s; use 0 <= min <= max", c.Duration.Min.D(), c.Duration.Max.D())
		}
	default:
		return fmt.Errorf("sim: duration.kind %q is unknown; known: fixed, uniform", c.Duration.Kind)
	}
	return nil
}

// plan draws the task's simulated duration and failure from (seed, id).
func (c Config) plan(id string) (time.Duration, bool) {
	h := fnv.New64a()
	h.Write([]byte(id))
	r := rand.New(rand.NewPCG(uint64(c.Seed), h.Sum64()))
	d := c.Duration.Fixed.D()
	if c.Duration.Kind == Uniform {
		d = c.Duration.Min.D()
		if span := c.Duration.Max - c.Duration.Min; span > 0 {
			d += time.Duration(r.Int64N(int64(span) + 1))
		}
	}
	return d, r.Float64() < c.FailureProbability
}

// real converts simulated time to real time.
func (c Config) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) * c.TimeScale)
}
