package drivers

import (
	"context"
	"io"
	"time"
)

// Driver is the contract between pcm and one back end. Every method is safe
// for concurrent use. A driver never admits more work than its Fingerprint
// capacity: Start returns an error wrapping ErrCapacity instead.
type Driver interface {
	// Name is the driver kind: "local", "slurm", "kubernetes", "exec", "sim".
	Name() string
	// Fingerprint reports capacity (total and free after admitted tasks),
	// attributes and the task kinds this driver runs.
	Fingerprint(ctx context.Context) (Fingerprint, error)
	// Start validates spec, reserves its resources and starts it. It returns
	// once the back end has accepted the task (it may still be pending).
	// Bad specs wrap ErrInvalidSpec; over-capacity wraps ErrCapacity.
	Start(ctx context.Context, spec TaskSpec) (Status, error)
	// Wait blocks until the task reaches a final state or ctx ends.
	Wait(ctx context.Context, id string) (Status, error)
	// Status returns the task's current state without blocking.
	Status(ctx context.Context, id string) (Status, error)
	// Logs streams the task's combined output from opts.Offset; with
	// opts.Follow it keeps streaming until the task ends or ctx ends.
	Logs(ctx context.Context, id string, opts LogOptions) (io.ReadCloser, error)
	// Stop asks the task to end (SIGTERM or the back end's equivalent),
	// waits up to grace, then forces it. Stopping a finished task is a no-op.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Recover reattaches to the tasks recorded in the driver's state dir
	// after a restart: running ones are tracked again, ones that ended
	// meanwhile report their final status. It returns every known task.
	Recover(ctx context.Context) ([]Status, error)
	// Close releases the driver. Running tasks keep running (so Recover can
	// find them); call Stop first to end them.
	Close() error
}

// Observable is an optional capability: a driver that reports every state
// change of every task (used by tests and metrics to check capacity from
// what really ran, not from what was planned).
type Observable interface {
	Observe(fn func(Event))
}

// Resources is an amount of compute. CPUs are cores (fractions allowed).
type Resources struct {
	CPUs     float64 `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
	GPUs     int     `json:"gpus,omitempty"`
	GPUModel string  `json:"gpu_model,omitempty"`
}

// Fingerprint is what a driver offers.
type Fingerprint struct {
	Driver     string            `json:"driver"`
	Total      Resources         `json:"total"`
	Free       Resources         `json:"free"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Kinds lists the task forms the driver runs: "command", "script", "image".
	Kinds []string `json:"kinds"`
	// Files: the driver stages inputs and collects outputs (it implements
	// Collector and its back end can); without it, specs with inputs or
	// outputs are refused.
	Files bool `json:"files,omitempty"`
}

// TaskSpec is one task as a driver sees it.
type TaskSpec struct {
	ID        string            `json:"id"`
	Resources Resources         `json:"resources"`
	Command   []string          `json:"command,omitempty"`
	Script    string            `json:"script,omitempty"`
	Image     string            `json:"image,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	// Timeout ends the task (as failed) after this long; 0 means none.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Options are driver-specific settings (partition, account, qos,
	// namespace); unknown keys are an ErrInvalidSpec.
	Options map[string]string `json:"options,omitempty"`
	// Inputs are archives unpacked into the work dir before the task
	// starts, and Outputs the files kept for CollectOutputs after it
	// ends; only drivers that implement Collector take either.
	Inputs  []Input  `json:"inputs,omitempty"`
	Outputs *Outputs `json:"outputs,omitempty"`
}

// State is a task's state inside a driver.
type State string

// Task states. Succeeded, Failed, Cancelled and Lost are final.
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
	StateLost      State = "lost"
)

// Final reports whether s is a terminal state.
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateLost:
		return true
	}
	return false
}

// Usage is what a task consumed, measured by the driver.
type Usage struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
	MaxRSSMB    int64   `json:"max_rss_mb,omitempty"`
}

// Status is a task's state and outcome.
type Status struct {
	ID         string    `json:"id"`
	State      State     `json:"state"`
	ExitCode   int       `json:"exit_code"`
	Message    string    `json:"message,omitempty"`
	NativeID   string    `json:"native_id,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Usage      Usage     `json:"usage"`
}

// LogOptions selects a part of a task's output.
type LogOptions struct {
	Offset int64
	Follow bool
}

// Event is one state change of one task, for Observable drivers.
type Event struct {
	TaskID    string    `json:"task_id"`
	State     State     `json:"state"`
	Time      time.Time `json:"time"`
	Resources Resources `json:"resources"`
}
