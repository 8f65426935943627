package agent

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// DefaultMinFreeMB is the free space an agent keeps on its data dir's file
// system (Config.MinFreeMB).
const DefaultMinFreeMB = 64

// Badger maps its memtable logs and value logs into memory; when the file
// system fills up, a write to such a mapping is a SIGBUS that kills the
// process (no error is returned anywhere). So the agent never lets it come
// to that: it refuses to start with less than MinFreeMB free, and a running
// agent whose free space falls below it stops cleanly (acknowledged
// entries are on disk; restart it once there is room).

// freeMB is the space available to this process on dir's file system.
func freeMB(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize) >> 20, nil
}

func (a *Agent) minFreeMB() int64 {
	if a.cfg.MinFreeMB > 0 {
		return int64(a.cfg.MinFreeMB)
	}
	return DefaultMinFreeMB
}

// checkDisk refuses a data dir with too little room.
func (a *Agent) checkDisk() error {
	free, err := freeMB(a.cfg.DataDir)
	if err != nil {
		return err
	}
	if min := a.minFreeMB(); free < min {
		return fmt.Errorf("data dir %s: %d MiB free on its file system, the agent needs at least %d MiB (its stores preallocate logs, and a full disk would crash them); free some space, move --data-dir, or lower min_free_mb: %w", a.cfg.DataDir, free, min, ErrDiskFull)
	}
	return nil
}

// ErrDiskFull: the data dir's file system is (nearly) full.
var ErrDiskFull = fmt.Errorf("not enough free disk space")

// diskWatch stops the agent cleanly when its file system fills up.
func (a *Agent) diskWatch(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.checkDisk(); err != nil {
			a.log.Error("stopping: the data dir is nearly full", "err", err)
			a.fatal(err)
			return
		}
	}
}

// fatal records why the agent must stop and tells Done's waiters.
func (a *Agent) fatal(err error) {
	a.fatalOnce.Do(func() {
		a.fatalErr = err
		close(a.done)
	})
}

// Done is closed when the agent must stop by itself (Err says why), e.g.
// its data dir's file system is nearly full.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is why Done was closed.
func (a *Agent) Err() error {
	select {
	case <-a.done:
		return a.fatalErr
	default:
		return nil
	}
}
