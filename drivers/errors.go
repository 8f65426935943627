package drivers

import "errors"

// Sentinel errors; drivers wrap them with a message that names the field
// and the fix, e.g. fmt.Errorf("%w: resources.cpus is -1; use a value > 0", ErrInvalidSpec).
var (
	ErrInvalidSpec = errors.New("invalid task spec")
	ErrCapacity    = errors.New("not enough capacity")
	ErrNotFound    = errors.New("task not found")
	ErrExists      = errors.New("task already exists")
	ErrClosed      = errors.New("driver closed")
	// ErrLogsUnavailable: the back end keeps no output for the task (for
	// example Kubernetes nodes simulated by kwok run no containers).
	ErrLogsUnavailable = errors.New("logs unavailable")
)
