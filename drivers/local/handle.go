package local

import (
	"fmt"
	"syscall"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// handle is one task the driver tracks. mu guards rec, child and killAt;
// done is closed once the task is final.
type handle struct {
	dir  string
	done chan struct{}

	rec record
	// child: the process is ours (we can wait4 it); false after a restart
	// in another process, where only /proc tells us it ended.
	child bool
	// termAt is when SIGTERM was sent (zero: not yet); killAt is when the
	// reaper escalates to SIGKILL.
	termAt, killAt time.Time
	// startGrace is the grace of a Stop that came while starting.
	startGrace time.Duration
}

func (h *handle) status() drivers.Status { return h.rec.Status }

// deadline is when the task times out (zero: never).
func (h *handle) deadline() time.Time {
	if h.rec.Spec.Timeout <= 0 || h.rec.Status.StartedAt.IsZero() {
		return time.Time{}
	}
	return h.rec.Status.StartedAt.Add(h.rec.Spec.Timeout)
}

// terminate sends SIGTERM to the task's process group now and arranges
// SIGKILL after grace. Caller holds the driver lock.
func (h *handle) terminate(reason string, grace time.Duration) {
	if h.rec.Stopping == "" {
		h.rec.Stopping = reason
	}
	if h.rec.PID <= 0 {
		// Still starting: launch signals once the pid is known (kill(-0)
		// would signal the agent's own process group).
		h.startGrace = grace
		return
	}
	now := time.Now()
	if h.termAt.IsZero() {
		h.termAt = now
		_ = syscall.Kill(-h.rec.PID, syscall.SIGTERM)
	}
	if k := now.Add(grace); h.killAt.IsZero() || k.Before(h.killAt) {
		h.killAt = k
	}
}

// outcome computes the final status from the exit code file, the wait
// status (nil when the process was not our child) and the rusage.
func (h *handle) outcome(ws *syscall.WaitStatus, ru *syscall.Rusage, now time.Time) drivers.Status {
	st := h.rec.Status
	st.FinishedAt = now
	if !st.StartedAt.IsZero() {
		st.Usage.WallSeconds = now.Sub(st.StartedAt).Seconds()
	}
	if ru != nil {
		st.Usage.CPUSeconds = tv(ru.Utime) + tv(ru.Stime)
		st.Usage.MaxRSSMB = ru.Maxrss / 1024
	}
	code, ok := readExitCode(h.dir)
	switch {
	case ok:
		st.ExitCode = code
	case ws != nil && ws.Exited():
		st.ExitCode = ws.ExitStatus()
	case ws != nil && ws.Signaled():
		st.ExitCode = 128 + int(ws.Signal())
		st.Message = "killed by signal " + ws.Signal().String()
	default:
		st.ExitCode = -1
		st.Message = "process ended without writing an exit code (its process group was killed, or the machine restarted)"
	}
	switch {
	case h.rec.Stopping == stopCancel:
		st.State, st.Message = drivers.StateCancelled, "stopped"
	case h.rec.Stopping == stopTimeout:
		st.State = drivers.StateFailed
		st.Message = fmt.Sprintf("timeout: still running after %s", h.rec.Spec.Timeout)
	case ok && code == 0 || !ok && ws != nil && ws.Exited() && ws.ExitStatus() == 0:
		st.State = drivers.StateSucceeded
	default:
		st.State = drivers.StateFailed
		if st.Message == "" {
			st.Message = fmt.Sprintf("exit code %d", st.ExitCode)
		}
	}
	return st
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
