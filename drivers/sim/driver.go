package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Name is the driver kind.
const Name = "sim"

// Task options (see the package doc).
const (
	OptDuration = "sim.duration"
	OptExitCode = "sim.exit_code"
	OptOutput   = "sim.output"
)

var kinds = []string{drivers.KindCommand, drivers.KindScript, drivers.KindImage}

var _ drivers.Driver = (*Driver)(nil)
var _ drivers.Observable = (*Driver)(nil)

// Driver simulates a back end.
type Driver struct {
	drivers.Observers
	cfg      Config
	log      *slog.Logger
	capacity *drivers.Capacity

	mu       sync.Mutex
	tasks    map[string]*task
	journal  *journal
	opened   bool
	closed   bool
	stop     chan struct{}
	timersWG sync.WaitGroup // one per armed timer
}

// New returns a simulator; it opens nothing until first use.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Driver{
		cfg:      cfg,
		log:      logger.With("component", "driver", "driver", Name),
		capacity: drivers.NewCapacity(cfg.Capacity),
		tasks:    make(map[string]*task),
		stop:     make(chan struct{}),
	}, nil
}

// Name returns "sim".
func (d *Driver) Name() string { return Name }

// Fingerprint reports the simulated capacity.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	if err := d.ready(); err != nil {
		return drivers.Fingerprint{}, err
	}
	attrs := map[string]string{"simulated": "true"}
	for k, v := range d.cfg.Attributes {
		attrs[k] = v
	}
	return drivers.Fingerprint{Driver: Name, Total: d.capacity.Total(), Free: d.capacity.Free(), Attributes: attrs, Kinds: kinds}, nil
}

// Start admits spec and schedules its simulated end.
func (d *Driver) Start(ctx context.Context, spec drivers.TaskSpec) (drivers.Status, error) {
	if err := drivers.ValidateSpec(spec, kinds, OptDuration, OptExitCode, OptOutput); err != nil {
		return drivers.Status{}, fmt.Errorf("sim: %w", err)
	}
	if err := drivers.RefuseFiles(Name, spec); err != nil {
		return drivers.Status{}, fmt.Errorf("sim: %w", err)
	}
	simDur, planned, output, err := d.plan(spec)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := d.ready(); err != nil {
		return drivers.Status{}, err
	}
	now := time.Now()
	t := &task{
		res:     spec.Resources,
		st:      drivers.Status{ID: spec.ID, State: drivers.StateRunning, StartedAt: now, NativeID: "sim-" + spec.ID},
		planned: planned,
		output:  output,
		end:     now.Add(d.cfg.real(simDur)),
		done:    make(chan struct{}),
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.tasks[spec.ID]; ok {
		return drivers.Status{}, fmt.Errorf("sim: %w: task %q; use a new id", drivers.ErrExists, spec.ID)
	}
	if err := d.capacity.Reserve(spec.ID, spec.Resources); err != nil {
		return drivers.Status{}, fmt.Errorf("sim: task %q: %w", spec.ID, err)
	}
	p := planned
	if err := d.journal.append(entry{Op: "start", ID: spec.ID, Time: now, Resources: spec.Resources, End: t.end, Planned: &p, Output: output}); err != nil {
		d.capacity.Release(spec.ID)
		return drivers.Status{}, fmt.Errorf("sim: task %q: journal: %w", spec.ID, err)
	}
	d.tasks[spec.ID] = t
	d.emit(spec.ID, t, drivers.StatePending)
	d.emit(spec.ID, t, drivers.StateRunning)
	d.arm(spec.ID, t, d.cfg.real(simDur))
	return t.st, nil
}

// plan decides the task's simulated duration, final status and output.
func (d *Driver) plan(spec drivers.TaskSpec) (time.Duration, drivers.Status, string, error) {
	dur, fail := d.cfg.plan(spec.ID)
	code := 0
	if fail {
		code = 1
	}
	if v, ok := spec.Options[OptDuration]; ok {
		x, err := time.ParseDuration(v)
		if err != nil || x < 0 {
			return 0, drivers.Status{}, "", fmt.Errorf("sim: %w: task %q: option %s=%q; use a duration >= 0 such as \"30s\"", drivers.ErrInvalidSpec, spec.ID, OptDuration, v)
		}
		dur = x
	}
	if v, ok := spec.Options[OptExitCode]; ok {
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 || x > 255 {
			return 0, drivers.Status{}, "", fmt.Errorf("sim: %w: task %q: option %s=%q; use an integer 0..255", drivers.ErrInvalidSpec, spec.ID, OptExitCode, v)
		}
		code = x
	}
	st := drivers.Status{ID: spec.ID, State: drivers.StateSucceeded, ExitCode: code}
	if code != 0 {
		st.State, st.Message = drivers.StateFailed, fmt.Sprintf("simulated failure: exit code %d", code)
	}
	if spec.Timeout > 0 && dur > spec.Timeout {
		dur = spec.Timeout
		st = drivers.Status{ID: spec.ID, State: drivers.StateFailed, ExitCode: -1, Message: fmt.Sprintf("timeout: still running after %s", spec.Timeout)}
	}
	out, ok := spec.Options[OptOutput]
	if ok {
		out += "\n"
	} else {
		out = fmt.Sprintf("sim: task %s ran %s and exited %d\n", spec.ID, dur, st.ExitCode)
	}
	st.Usage = drivers.Usage{WallSeconds: dur.Seconds(), CPUSeconds: dur.Seconds() * spec.Resources.CPUs}
	return dur, st, out, nil
}

// arm schedules t's end after real. Caller holds d.mu.
func (d *Driver) arm(id string, t *task, real time.Duration) {
	d.timersWG.Add(1)
	t.timer = time.AfterFunc(real, func() {
		defer d.timersWG.Done()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.closed || t.st.State.Final() {
			return
		}
		d.finish(id, t, t.planned)
	})
}

// finish moves t to final status st. Caller holds d.mu.
func (d *Driver) finish(id string, t *task, st drivers.Status) {
	st.StartedAt, st.NativeID = t.st.StartedAt, t.st.NativeID
	st.FinishedAt = time.Now()
	t.st = st
	d.capacity.Release(id)
	close(t.done)
	d.emit(id, t, st.State)
}

func (d *Driver) emit(id string, t *task, s drivers.State) {
	d.Emit(drivers.Event{TaskID: id, State: s, Time: time.Now(), Resources: t.res})
}

// Wait blocks until id is final.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.Status, error) {
	t, err := d.get(id)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := drivers.WaitDone(ctx, t.done, d.stop); err != nil {
		return drivers.Status{}, fmt.Errorf("sim: wait %s: %w", id, err)
	}
	return d.Status(ctx, id)
}

// Status returns id's status.
func (d *Driver) Status(ctx context.Context, id string) (drivers.Status, error) {
	t, err := d.get(id)
	if err != nil {
		return drivers.Status{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return t.st, nil
}

// Logs returns the simulated output (see the package doc).
func (d *Driver) Logs(ctx context.Context, id string, opts drivers.LogOptions) (io.ReadCloser, error) {
	t, err := d.get(id)
	if err != nil {
		return nil, err
	}
	get := func() string {
		d.mu.Lock()
		defer d.mu.Unlock()
		return t.logs()
	}
	if !opts.Follow {
		return io.NopCloser(strings.NewReader(tail(get(), opts.Offset))), nil
	}
	return &followReader{ctx: ctx, done: t.done, closed: d.stop, get: get, offset: opts.Offset}, nil
}

// Stop cancels id at once (a simulated task needs no grace).
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	t, err := d.get(id)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.st.State.Final() {
		return nil
	}
	if t.timer != nil && t.timer.Stop() {
		d.timersWG.Done()
	}
	if err := d.journal.append(entry{Op: "stop", ID: id, Time: time.Now()}); err != nil {
		d.log.Warn("journal stop", "task", id, "err", err)
	}
	st := t.planned
	st.State, st.ExitCode, st.Message = drivers.StateCancelled, -1, "stopped"
	st.Usage.WallSeconds = time.Since(t.st.StartedAt).Seconds() / d.cfg.TimeScale
	d.finish(id, t, st)
	return nil
}

// Recover replays the journal (once) and returns every task, sorted.
func (d *Driver) Recover(ctx context.Context) ([]drivers.Status, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]drivers.Status, 0, len(d.tasks))
	for _, t := range d.tasks {
		out = append(out, t.st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Close stops the timers and the journal; unfinished tasks stay in the
// journal for Recover. Idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.stop)
	for _, t := range d.tasks {
		if t.timer != nil && t.timer.Stop() {
			d.timersWG.Done()
		}
	}
	err := d.journal.close()
	d.mu.Unlock()
	d.timersWG.Wait()
	return err
}

func (d *Driver) get(id string) (*task, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("sim: %w: %q", drivers.ErrNotFound, id)
	}
	return t, nil
}

// ready replays the journal and opens it for appending, once.
func (d *Driver) ready() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("sim: %w", drivers.ErrClosed)
	}
	if d.opened {
		return nil
	}
	entries, err := readJournal(d.cfg.StateDir)
	if err != nil {
		return err
	}
	j, err := openJournal(d.cfg.StateDir)
	if err != nil {
		return err
	}
	d.journal, d.opened = j, true
	now := time.Now()
	for _, e := range entries {
		switch e.Op {
		case "start":
			if e.Planned == nil {
				continue
			}
			t := &task{res: e.Resources, planned: *e.Planned, output: e.Output, end: e.End, done: make(chan struct{}),
				st: drivers.Status{ID: e.ID, State: drivers.StateRunning, StartedAt: e.Time, NativeID: "sim-" + e.ID}}
			d.tasks[e.ID] = t
			d.capacity.Force(e.ID, e.Resources)
		case "stop":
			if t, ok := d.tasks[e.ID]; ok && !t.st.State.Final() {
				st := t.planned
				st.State, st.ExitCode, st.Message = drivers.StateCancelled, -1, "stopped"
				d.finish(e.ID, t, st)
				t.st.FinishedAt = e.Time
			}
		}
	}
	for id, t := range d.tasks {
		switch {
		case t.st.State.Final():
		case !t.end.After(now):
			d.finish(id, t, t.planned)
			t.st.FinishedAt = t.end
		default:
			d.arm(id, t, t.end.Sub(now))
		}
	}
	return nil
}
