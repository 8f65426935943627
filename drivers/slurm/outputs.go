package slurm

import (
	"context"
	"fmt"
	"io"

	"github.com/pcm-mesh/pcm/drivers"
)

var _ drivers.Collector = (*Driver)(nil)

// CollectOutputs packs the declared outputs of finished task id from its
// job's working directory (the state dir is on a file system the agent
// and the job share: a one-machine cluster or a shared mount).
func (d *Driver) CollectOutputs(ctx context.Context, id string, w io.Writer) (int64, error) {
	t, err := d.get(id)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	spec, final := t.rec.Spec, t.st.State.Final()
	t.mu.Unlock()
	if !final {
		return 0, fmt.Errorf("slurm: task %q is still running; collect its outputs after it ends", id)
	}
	n, err := drivers.CollectWorkDir(spec, d.store.workDir(id), w)
	if err != nil {
		return n, fmt.Errorf("slurm: %w", err)
	}
	return n, nil
}
