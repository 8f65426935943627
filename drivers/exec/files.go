package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pcm-mesh/pcm/drivers"
)

var _ drivers.Collector = (*Driver)(nil)

// workDir is where a task of a plugin that declares files runs; pcm owns
// it: <state_dir>/pcm-work/<id>/, with the spec beside it (<id>.json) so
// outputs can be collected after a restart.
func (d *Driver) workDir(id string) string { return filepath.Join(d.cfg.StateDir, "pcm-work", id) }

// prepareWorkDir creates the task's work dir, records its spec and
// unpacks its inputs.
func (d *Driver) prepareWorkDir(spec drivers.TaskSpec) (string, error) {
	work := d.workDir(spec.ID)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", fmt.Errorf("exec: task %q: %w", spec.ID, err)
	}
	if err := drivers.SaveJSON(work+".json", spec); err != nil {
		return "", fmt.Errorf("exec: task %q: %w", spec.ID, err)
	}
	if err := drivers.StageInputs(spec, work); err != nil {
		_ = os.RemoveAll(work)
		return "", fmt.Errorf("exec: task %q: %w", spec.ID, err)
	}
	return work, nil
}

// CollectOutputs packs the declared outputs of finished task id from the
// work dir the plugin ran it in. A plugin that does not declare files
// keeps no such dir: ErrNoOutputs.
func (d *Driver) CollectOutputs(ctx context.Context, id string, w io.Writer) (int64, error) {
	st, err := d.Status(ctx, id)
	if err != nil {
		return 0, err
	}
	if !st.State.Final() {
		return 0, fmt.Errorf("exec: task %q is still running; collect its outputs after it ends", id)
	}
	var spec drivers.TaskSpec
	b, err := os.ReadFile(d.workDir(id) + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("exec: task %q: %w", id, drivers.ErrNoOutputs)
	}
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		return 0, fmt.Errorf("exec: task %q: %w", id, err)
	}
	n, err := drivers.CollectWorkDir(spec, d.workDir(id), w)
	if err != nil {
		return n, fmt.Errorf("exec: %w", err)
	}
	return n, nil
}
