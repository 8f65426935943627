package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// record is what the state dir keeps for one task.
type record struct {
	Spec drivers.TaskSpec `json:"spec"`
	// Resources are the accounted ones (memory defaulted).
	Resources drivers.Resources `json:"resources"`
	Namespace string            `json:"namespace"`
	JobName   string            `json:"job_name"`
	CreatedAt time.Time         `json:"created_at"`
	// StopRequested makes a job that ends after Stop report cancelled.
	StopRequested bool `json:"stop_requested,omitempty"`
	// Final is set once the task reached a final state.
	Final *drivers.Status `json:"final,omitempty"`
}

// store lays out the state dir:
//
//	<dir>/tasks/<id>/task.json   the record
//	<dir>/tasks/<id>/output.log  the pod's logs, saved once the task is final
type store struct{ dir string }

func (s store) taskDir(id string) string    { return filepath.Join(s.dir, "tasks", id) }
func (s store) outputPath(id string) string { return filepath.Join(s.taskDir(id), "output.log") }

// create makes the task's directories; it fails with ErrExists when the
// task already has a record.
func (s store) create(id string) error {
	if _, err := os.Stat(filepath.Join(s.taskDir(id), "task.json")); err == nil {
		return fmt.Errorf("%w: task %q already has a record in %s; use a new id", drivers.ErrExists, id, s.taskDir(id))
	}
	if err := os.MkdirAll(s.taskDir(id), 0o755); err != nil {
		return fmt.Errorf("create task dir: %w", err)
	}
	return nil
}

// save writes rec atomically (temp file, fsync, rename).
func (s store) save(rec *record) error {
	if err := drivers.SaveJSON(filepath.Join(s.taskDir(rec.Spec.ID), "task.json"), rec); err != nil {
		return fmt.Errorf("save record of task %q: %w", rec.Spec.ID, err)
	}
	return nil
}

// remove deletes a task's directory (used when the API refused the Job).
func (s store) remove(id string) error { return os.RemoveAll(s.taskDir(id)) }

// loadAll reads every record, sorted by task id (the directory names).
func (s store) loadAll() ([]*record, error) {
	return drivers.LoadJSONRecords[record](filepath.Join(s.dir, "tasks"), "task.json")
}
