package kubernetes

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	// LogsError says why the pod's logs could not be saved (kwok nodes,
	// an unreachable kubelet), so Logs can tell it once the pod is gone.
	LogsError string `json:"logs_error,omitempty"`
}

// store lays out the state dir:
//
//	<dir>/tasks/<id>/task.json   the record
//	<dir>/tasks/<id>/output.log  the pod's logs, saved once the task is final
//	<dir>/instance.json          this driver's instance id (6 hex digits)
type store struct{ dir string }

func (s store) taskDir(id string) string    { return filepath.Join(s.dir, "tasks", id) }
func (s store) outputPath(id string) string { return filepath.Join(s.taskDir(id), "output.log") }

// instance reads the state dir's instance id, making one on first use.
func (s store) instance() (string, error) {
	path := filepath.Join(s.dir, "instance.json")
	var saved struct {
		Instance string `json:"instance"`
	}
	b, err := os.ReadFile(path)
	if err == nil {
		if json.Unmarshal(b, &saved) == nil && len(saved.Instance) == 6 && strings.Trim(saved.Instance, "0123456789abcdef") == "" {
			return saved.Instance, nil
		}
		return "", fmt.Errorf("kubernetes: %s does not hold an instance id of 6 hex digits; restore it (it names this driver's Jobs) or remove it when no Job of this state dir runs", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("kubernetes: read instance id: %w", err)
	}
	var raw [3]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("kubernetes: make instance id: %w", err)
	}
	saved.Instance = hex.EncodeToString(raw[:])
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return "", fmt.Errorf("kubernetes: create state dir: %w", err)
	}
	if err := drivers.SaveJSON(path, saved); err != nil {
		return "", fmt.Errorf("kubernetes: save instance id: %w", err)
	}
	return saved.Instance, nil
}

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
