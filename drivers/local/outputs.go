package local

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/pcm-mesh/pcm/drivers"
)

// CollectOutputs packs the declared outputs of finished task id from its
// work dir (also after a restart: the spec is in the task's record).
func (d *Driver) CollectOutputs(ctx context.Context, id string, w io.Writer) (int64, error) {
	h, err := d.get(id)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	spec, final := h.rec.Spec, h.status().State.Final()
	d.mu.Unlock()
	if !final {
		return 0, fmt.Errorf("local: task %q is still running; collect its outputs after it ends", id)
	}
	n, err := drivers.CollectWorkDir(spec, filepath.Join(h.dir, workDir), w)
	if err != nil {
		return n, fmt.Errorf("local: %w", err)
	}
	return n, nil
}
