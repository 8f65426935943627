package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Name is the driver kind.
const Name = "local"

const (
	stopCancel  = "cancelled"
	stopTimeout = "timeout"
)

// wrapper runs the task's argv ("$@" after the exit-code path) and records
// its exit code atomically; limits are prepended as ulimit lines.
//
// The wrapper catches SIGTERM with a no-op trap: POSIX shells run a trap
// only after the foreground command ends, so on Stop the wrapper outlives
// the command (which gets the default SIGTERM action) and still records
// its exit code. Caught signals are reset on exec, so the command is not
// affected.
const wrapper = `trap : TERM INT; f=$1; shift; "$@"; c=$?; echo $c >"$f.tmp" && mv "$f.tmp" "$f"; exit $c`

var _ drivers.Driver = (*Driver)(nil)
var _ drivers.Observable = (*Driver)(nil)
var _ drivers.Collector = (*Driver)(nil)

// Driver runs tasks as local child processes.
type Driver struct {
	drivers.Observers
	cfg      Config
	log      *slog.Logger
	capacity *drivers.Capacity
	devNull  *os.File

	loadOnce sync.Once
	loadErr  error

	mu      sync.Mutex
	tasks   map[string]*handle
	running bool // reaper started
	closed  bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a driver for cfg. It creates the state dir but starts no
// goroutine and no process; call Recover before Start after a restart.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(tasksDir(cfg.StateDir), 0o700); err != nil {
			return nil, fmt.Errorf("local: create state dir: %w", err)
		}
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return &Driver{
		cfg:      cfg,
		log:      logger.With("component", "driver", "driver", Name),
		capacity: drivers.NewCapacity(cfg.Capacity),
		devNull:  devNull,
		tasks:    make(map[string]*handle),
		stop:     make(chan struct{}),
	}, nil
}

// Name returns "local".
func (d *Driver) Name() string { return Name }

// Fingerprint reports the configured capacity and host attributes.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	if err := d.ready(); err != nil {
		return drivers.Fingerprint{}, err
	}
	attrs := map[string]string{"os": runtime.GOOS, "arch": runtime.GOARCH}
	if h, err := os.Hostname(); err == nil {
		attrs["hostname"] = h
	}
	for k, v := range d.cfg.Attributes {
		attrs[k] = v
	}
	return drivers.Fingerprint{
		Driver:     Name,
		Total:      d.capacity.Total(),
		Free:       d.capacity.Free(),
		Attributes: attrs,
		Kinds:      []string{drivers.KindCommand, drivers.KindScript},
		Files:      true,
	}, nil
}

// Start validates spec, reserves its resources, records it and starts its
// process. It returns the running status.
func (d *Driver) Start(ctx context.Context, spec drivers.TaskSpec) (drivers.Status, error) {
	if err := drivers.ValidateSpec(spec, []string{drivers.KindCommand, drivers.KindScript}); err != nil {
		return drivers.Status{}, fmt.Errorf("local: %w", err)
	}
	if err := d.ready(); err != nil {
		return drivers.Status{}, err
	}
	dir := taskDir(d.cfg.StateDir, spec.ID)
	h := &handle{dir: dir, done: make(chan struct{}), child: true}
	h.rec.Spec = spec
	h.rec.Status = drivers.Status{ID: spec.ID, State: drivers.StatePending}

	d.mu.Lock()
	if _, ok := d.tasks[spec.ID]; ok {
		d.mu.Unlock()
		return drivers.Status{}, fmt.Errorf("local: %w: task %q; use a new id", drivers.ErrExists, spec.ID)
	}
	if err := d.capacity.Reserve(spec.ID, spec.Resources); err != nil {
		d.mu.Unlock()
		return drivers.Status{}, fmt.Errorf("local: task %q: %w", spec.ID, err)
	}
	d.tasks[spec.ID] = h // claims the id while the process starts
	d.mu.Unlock()

	st, err := d.launch(h)
	if err != nil {
		d.mu.Lock()
		delete(d.tasks, spec.ID)
		h.rec.Status.State, h.rec.Status.Message = drivers.StateFailed, err.Error()
		close(h.done) // wakes a Stop or Wait that found the claimed id
		d.mu.Unlock()
		d.capacity.Release(spec.ID)
		return drivers.Status{}, err
	}
	return st, nil
}

// launch creates the task dir, records the task and starts the process.
// On error nothing is left running and the dir is removed (unless it
// belonged to an earlier task with the same id).
func (d *Driver) launch(h *handle) (drivers.Status, error) {
	spec := h.rec.Spec
	if err := os.Mkdir(h.dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return drivers.Status{}, fmt.Errorf("local: %w: task %q has a dir in %s; use a new id", drivers.ErrExists, spec.ID, d.cfg.StateDir)
		}
		return drivers.Status{}, fmt.Errorf("local: task %q: %w", spec.ID, err)
	}
	fail := func(err error) (drivers.Status, error) {
		_ = os.RemoveAll(h.dir)
		return drivers.Status{}, fmt.Errorf("local: task %q: %w", spec.ID, err)
	}
	work := filepath.Join(h.dir, workDir)
	if err := os.Mkdir(work, 0o700); err != nil {
		return fail(err)
	}
	if err := drivers.StageInputs(spec, work); err != nil {
		return fail(err)
	}
	argv, err := d.argv(h)
	if err != nil {
		return fail(err)
	}
	if err := writeRecord(h.dir, &h.rec); err != nil {
		return fail(err)
	}
	out, err := os.OpenFile(filepath.Join(h.dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fail(err)
	}
	d.mu.Lock() // no reap may run between fork and recording the pid
	defer d.mu.Unlock()
	proc, err := os.StartProcess(d.cfg.Shell, argv, &os.ProcAttr{
		Dir:   work,
		Env:   d.env(spec, work),
		Files: []*os.File{d.devNull, out, out},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	out.Close()
	if err != nil {
		return fail(err)
	}
	pid := proc.Pid
	_ = proc.Release() // the reaper waits with wait4 on the pid
	_, start, _ := procStat(pid)
	h.rec.PID, h.rec.PIDStart = pid, start
	h.rec.Status.State = drivers.StateRunning
	h.rec.Status.NativeID = strconv.Itoa(pid)
	h.rec.Status.StartedAt = time.Now()
	if err := writeRecord(h.dir, &h.rec); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
		return fail(err)
	}
	d.emit(h, drivers.StatePending)
	d.emit(h, drivers.StateRunning)
	if h.rec.Stopping != "" { // Stop came while starting
		h.terminate(h.rec.Stopping, h.startGrace)
	}
	d.log.Debug("task started", "task", spec.ID, "pid", pid)
	return h.rec.Status, nil
}

// argv is the wrapper's argv: shell, -c, limits+wrapper, $0, exit file,
// then the task's own argv.
func (d *Driver) argv(h *handle) ([]string, error) {
	spec := h.rec.Spec
	var limits strings.Builder
	if m := spec.Resources.MemoryMB; m > 0 && !d.cfg.NoMemoryLimit {
		fmt.Fprintf(&limits, "ulimit -v %d || exit 125; ", m*1024)
	}
	if c := spec.Resources.CPUs; c > 0 && spec.Timeout > 0 {
		secs := int64(c*spec.Timeout.Seconds()) + 1
		fmt.Fprintf(&limits, "ulimit -t %d || exit 125; ", secs)
	}
	task := spec.Command
	if spec.Script != "" {
		path := filepath.Join(h.dir, scriptFile)
		if err := os.WriteFile(path, []byte(spec.Script), 0o700); err != nil {
			return nil, err
		}
		task = []string{d.cfg.Shell, path}
		if strings.HasPrefix(spec.Script, "#!") {
			task = []string{path}
		}
	}
	argv := []string{d.cfg.Shell, "-c", limits.String() + wrapper, "pcm-task", filepath.Join(h.dir, exitCodeFile)}
	return append(argv, task...), nil
}

// env is the task environment: not the agent's (it may hold secrets),
// but PATH, HOME (the work dir), PCM_TASK_ID, config env and task env.
func (d *Driver) env(spec drivers.TaskSpec, work string) []string {
	m := map[string]string{"PATH": d.cfg.Path, "HOME": work, "PCM_TASK_ID": spec.ID, "PCM_WORK_DIR": work}
	for k, v := range d.cfg.Env {
		m[k] = v
	}
	for k, v := range spec.Env {
		m[k] = v
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	return env
}

// Wait blocks until id is final, ctx ends or the driver closes.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.Status, error) {
	h, err := d.get(id)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := drivers.WaitDone(ctx, h.done, d.stop); err != nil {
		return drivers.Status{}, fmt.Errorf("local: wait %s: %w", id, err)
	}
	return d.Status(ctx, id)
}

// Status returns id's current status.
func (d *Driver) Status(ctx context.Context, id string) (drivers.Status, error) {
	h, err := d.get(id)
	if err != nil {
		return drivers.Status{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return h.status(), nil
}

// Logs returns id's output from opts.Offset; with Follow, the reader ends
// (io.EOF) once the task has ended and everything is read.
func (d *Driver) Logs(ctx context.Context, id string, opts drivers.LogOptions) (io.ReadCloser, error) {
	h, err := d.get(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(h.dir, logFile))
	if err != nil {
		return nil, fmt.Errorf("local: logs of %s: %w", id, err)
	}
	if _, err := f.Seek(opts.Offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("local: logs of %s: offset %d: %w", id, opts.Offset, err)
	}
	return &drivers.Follower{Ctx: ctx, Next: f.Read, Follow: opts.Follow, Done: h.done, Closed: d.stop, Poll: 50 * time.Millisecond, OnClose: f.Close}, nil
}

// Stop sends SIGTERM to the task's process group, and SIGKILL after grace
// (the driver's Grace if grace is 0). It returns once the task is final,
// or when ctx ends (escalation still happens).
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	h, err := d.get(id)
	if err != nil {
		return err
	}
	if grace <= 0 {
		grace = d.cfg.Grace.D()
	}
	d.mu.Lock()
	if h.rec.Status.State.Final() {
		d.mu.Unlock()
		return nil
	}
	h.terminate(stopCancel, grace)
	if err := writeRecord(h.dir, &h.rec); err != nil {
		d.log.Warn("record stop", "task", id, "err", err)
	}
	d.mu.Unlock()
	d.reapNow()
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.stop:
		return fmt.Errorf("local: stop %s: %w", id, drivers.ErrClosed)
	}
}

// Close stops tracking tasks (they keep running for Recover) and waits
// for the reaper. It is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.stop)
	d.mu.Unlock()
	d.wg.Wait()
	return d.devNull.Close()
}

// get returns id's handle, or ErrNotFound / ErrClosed.
func (d *Driver) get(id string) (*handle, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("local: %w: %q", drivers.ErrNotFound, id)
	}
	return h, nil
}

// ready loads the state dir once and starts the reaper, or reports
// ErrClosed.
func (d *Driver) ready() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("local: %w", drivers.ErrClosed)
	}
	d.mu.Unlock()
	d.loadOnce.Do(func() {
		d.loadErr = d.load()
		if d.loadErr == nil {
			d.startReaper()
		}
	})
	return d.loadErr
}

// Recover loads every task recorded in the state dir (once), reattaches
// to running ones and finalizes ones that ended meanwhile. It returns
// every known task, sorted by id.
func (d *Driver) Recover(ctx context.Context) ([]drivers.Status, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	d.reapNow()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]drivers.Status, 0, len(d.tasks))
	for _, h := range d.tasks {
		out = append(out, h.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// load reads every task record; running ones are reattached (the reaper
// finalizes the ones that are gone).
func (d *Driver) load() error {
	entries, err := os.ReadDir(tasksDir(d.cfg.StateDir))
	if err != nil {
		return fmt.Errorf("local: read state dir: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(tasksDir(d.cfg.StateDir), e.Name())
		rec, err := readRecord(dir)
		if err != nil {
			d.log.Warn("skip unreadable task record", "dir", dir, "err", err)
			continue
		}
		h := &handle{dir: dir, done: make(chan struct{}), rec: *rec, child: true}
		d.mu.Lock()
		d.tasks[rec.Spec.ID] = h
		switch {
		case rec.Status.State.Final():
			close(h.done)
		case rec.PID == 0:
			// Recorded but the agent stopped before the process started.
			h.rec.Status.State = drivers.StateLost
			h.rec.Status.Message = "the agent stopped before the task's process started"
			h.rec.Status.FinishedAt = time.Now()
			if err := writeRecord(dir, &h.rec); err != nil {
				d.log.Warn("record lost task", "task", rec.Spec.ID, "err", err)
			}
			close(h.done)
		default:
			d.capacity.Force(rec.Spec.ID, rec.Spec.Resources)
		}
		d.mu.Unlock()
	}
	return nil
}

// emit sends an event for h's current state. Caller holds d.mu or owns h.
func (d *Driver) emit(h *handle, s drivers.State) {
	d.Emit(drivers.Event{TaskID: h.rec.Spec.ID, State: s, Time: time.Now(), Resources: h.rec.Spec.Resources})
}

func (d *Driver) startReaper() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running || d.closed {
		return
	}
	d.running = true
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	d.wg.Go(func() {
		defer signal.Stop(sigs)
		tick := time.NewTicker(d.cfg.PollInterval.D())
		defer tick.Stop()
		for {
			d.reap()
			select {
			case <-d.stop:
				return
			case <-sigs:
			case <-tick.C:
			}
		}
	})
}

// reapNow runs one reap pass in the caller (cheap when nothing ended).
func (d *Driver) reapNow() { d.reap() }

// reap finalizes every task whose process ended, times out overdue tasks
// and escalates SIGTERM to SIGKILL after the grace period.
func (d *Driver) reap() {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, h := range d.tasks {
		if h.rec.Status.State != drivers.StateRunning {
			continue
		}
		if ended, ws, ru := d.ended(h); ended {
			d.finish(h, ws, ru)
			continue
		}
		if dl := h.deadline(); !dl.IsZero() && now.After(dl) && h.termAt.IsZero() {
			h.terminate(stopTimeout, d.cfg.Grace.D())
			if err := writeRecord(h.dir, &h.rec); err != nil {
				d.log.Warn("record timeout", "task", h.rec.Spec.ID, "err", err)
			}
		}
		if !h.killAt.IsZero() && now.After(h.killAt) {
			_ = syscall.Kill(-h.rec.PID, syscall.SIGKILL)
		}
	}
}

// ended reports whether h's process has exited, with its wait status and
// usage when it was our child.
func (d *Driver) ended(h *handle) (bool, *syscall.WaitStatus, *syscall.Rusage) {
	if h.child {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		pid, err := syscall.Wait4(h.rec.PID, &ws, syscall.WNOHANG, &ru)
		switch {
		case pid == h.rec.PID:
			return true, &ws, &ru
		case err == nil:
			return false, nil, nil
		}
		h.child = false // ECHILD: reattached after a restart
	}
	return !alive(h.rec.PID, h.rec.PIDStart), nil, nil
}

// finish records h's final status, releases its capacity and wakes
// waiters. Caller holds d.mu.
func (d *Driver) finish(h *handle, ws *syscall.WaitStatus, ru *syscall.Rusage) {
	h.rec.Status = h.outcome(ws, ru, time.Now())
	// The task ends with its main process: leftovers of its group go too.
	_ = syscall.Kill(-h.rec.PID, syscall.SIGKILL)
	if err := writeRecord(h.dir, &h.rec); err != nil {
		d.log.Warn("record final status", "task", h.rec.Spec.ID, "err", err)
	}
	d.capacity.Release(h.rec.Spec.ID)
	close(h.done)
	d.emit(h, h.rec.Status.State)
	d.log.Debug("task ended", "task", h.rec.Spec.ID, "state", h.rec.Status.State, "exit", h.rec.Status.ExitCode)
}
