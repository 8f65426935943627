package slurm

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// record is what the state dir keeps for one task: enough to find its job
// again after a restart and to answer for it once Slurm forgets the job.
type record struct {
	Spec drivers.TaskSpec `json:"spec"`
	// Resources are the effective ones (CPUs rounded up, memory defaulted).
	Resources   drivers.Resources `json:"resources"`
	Partition   string            `json:"partition,omitempty"`
	Account     string            `json:"account,omitempty"`
	QOS         string            `json:"qos,omitempty"`
	JobName     string            `json:"job_name"`
	JobID       string            `json:"job_id,omitempty"`
	SubmittedAt time.Time         `json:"submitted_at"`
	// StopRequested makes a job that ends after Stop report cancelled.
	StopRequested bool `json:"stop_requested,omitempty"`
	// Final is set once the task reached a final state.
	Final *drivers.Status `json:"final,omitempty"`
}

// store lays out the state dir:
//
//	<dir>/tasks/<id>/task.json   the record
//	<dir>/tasks/<id>/job.sh      the batch script given to sbatch
//	<dir>/tasks/<id>/output.log  the job's stdout+stderr (written by slurmd)
//	<dir>/tasks/<id>/work/       the job's working directory
type store struct{ dir string }

func (s store) taskDir(id string) string    { return filepath.Join(s.dir, "tasks", id) }
func (s store) scriptPath(id string) string { return filepath.Join(s.taskDir(id), "job.sh") }
func (s store) outputPath(id string) string { return filepath.Join(s.taskDir(id), "output.log") }
func (s store) workDir(id string) string    { return filepath.Join(s.taskDir(id), "work") }

// create makes the task's directories; it fails with ErrExists when the
// task already has a record.
func (s store) create(id string) error {
	if _, err := os.Stat(filepath.Join(s.taskDir(id), "task.json")); err == nil {
		return fmt.Errorf("%w: task %q already has a record in %s; use a new id", drivers.ErrExists, id, s.taskDir(id))
	}
	if err := os.MkdirAll(s.workDir(id), 0o755); err != nil {
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

// remove deletes a task's directory (used when sbatch refused the job).
func (s store) remove(id string) error { return os.RemoveAll(s.taskDir(id)) }

// loadAll reads every record, sorted by task id (the directory names).
func (s store) loadAll() ([]*record, error) {
	return drivers.LoadJSONRecords[record](filepath.Join(s.dir, "tasks"), "task.json")
}
