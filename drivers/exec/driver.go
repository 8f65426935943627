package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Name is the driver kind.
const Name = "exec"

// ProtocolVersion is the plugin protocol this package speaks.
const ProtocolVersion = 1

var _ drivers.Driver = (*Driver)(nil)
var _ drivers.Observable = (*Driver)(nil)

// Config configures one plugin.
type Config struct {
	// Command is the plugin's argv, e.g. ["python3", "shell-driver.py"].
	Command []string `json:"command"`
	// StateDir is sent to the plugin in the handshake; it keeps task
	// state there. Required.
	StateDir string `json:"state_dir"`
	// Config is sent verbatim to the plugin in the handshake.
	Config map[string]any `json:"config,omitempty"`
	// Env is added to the plugin's environment.
	Env map[string]string `json:"env,omitempty"`
	// CallTimeout bounds one call (Stop gets its grace on top); default 30s.
	CallTimeout drivers.Duration `json:"call_timeout"`
	// PollInterval is how often non-final tasks' status is polled;
	// default 200ms.
	PollInterval drivers.Duration `json:"poll_interval"`
}

func (c *Config) applyDefaults() {
	if c.CallTimeout == 0 {
		c.CallTimeout = drivers.Duration(30 * time.Second)
	}
	if c.PollInterval == 0 {
		c.PollInterval = drivers.Duration(200 * time.Millisecond)
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.Command) == 0 || c.Command[0] == "":
		return errors.New("exec: command is empty; set it to the plugin's argv, e.g. [\"python3\", \"plugin.py\"]")
	case c.StateDir == "":
		return errors.New("exec: state_dir is empty; set it to a writable directory for the plugin")
	case c.CallTimeout <= 0 || c.PollInterval <= 0:
		return fmt.Errorf("exec: call_timeout %s and poll_interval %s must be positive", c.CallTimeout.D(), c.PollInterval.D())
	}
	return nil
}

type hello struct {
	Protocol int      `json:"protocol"`
	Name     string   `json:"name"`
	Options  []string `json:"options"`
	// Files: the plugin runs each task in the work_dir that start names,
	// so pcm stages inputs there and collects outputs from it.
	Files bool `json:"files,omitempty"`
}

type recovered struct {
	Status    drivers.Status    `json:"status"`
	Resources drivers.Resources `json:"resources"`
}

type logChunk struct {
	Data []byte `json:"data"` // base64 in JSON
	EOF  bool   `json:"eof"`
}

// task is the Go side's view of one plugin task, guarded by Driver.mu.
type task struct {
	res      drivers.Resources
	starting bool // the plugin's start call is in flight
	st       drivers.Status
	done     chan struct{}
}

// Driver is a drivers.Driver backed by a plugin process.
type Driver struct {
	drivers.Observers
	cfg Config
	log *slog.Logger

	procMu sync.Mutex // guards proc and hello; held while (re)starting
	proc   *proc
	hello  hello

	loadMu   sync.Mutex
	loaded   bool
	capacity *drivers.Capacity
	fp       drivers.Fingerprint // total, attributes, kinds

	mu     sync.Mutex
	tasks  map[string]*task
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// New returns a driver for the plugin cfg names; the plugin starts on
// first use.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Driver{
		cfg:   cfg,
		log:   logger.With("component", "driver", "driver", Name, "plugin", cfg.Command[0]),
		tasks: make(map[string]*task),
		stop:  make(chan struct{}),
	}, nil
}

// Name returns "exec".
func (d *Driver) Name() string { return Name }

// plugin returns the running plugin, starting it (and handshaking) if it
// is not running.
func (d *Driver) plugin(ctx context.Context) (*proc, error) {
	d.procMu.Lock()
	defer d.procMu.Unlock()
	if d.proc != nil {
		select {
		case <-d.proc.dead:
			d.proc.wg.Wait()
			d.proc = nil
		default:
			return d.proc, nil
		}
	}
	p, err := spawn(d.cfg, d.log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout.D())
	defer cancel()
	var h hello
	params := map[string]any{"protocol": ProtocolVersion, "state_dir": d.cfg.StateDir, "config": d.cfg.Config}
	err = p.call(ctx, "handshake", params, &h)
	if err == nil && h.Protocol != ProtocolVersion {
		err = fmt.Errorf("%w: plugin %q answered protocol %d, pcm speaks %d", ErrProtocol, h.Name, h.Protocol, ProtocolVersion)
	}
	if err != nil {
		p.kill()
		p.wg.Wait()
		return nil, fmt.Errorf("exec: handshake: %w", err)
	}
	d.log.Info("plugin started", "name", h.Name, "pid", p.cmd.Process.Pid)
	d.proc, d.hello = p, h
	return p, nil
}

// call runs one plugin method with the call timeout (plus extra).
func (d *Driver) call(ctx context.Context, extra time.Duration, method string, params, result any) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout.D()+extra)
	defer cancel()
	p, err := d.plugin(ctx)
	if err != nil {
		return err
	}
	return p.call(ctx, method, params, result)
}

// ready starts the plugin, reads its fingerprint and its tasks, once.
func (d *Driver) ready(ctx context.Context) error {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return fmt.Errorf("exec: %w", drivers.ErrClosed)
	}
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	if d.loaded {
		return nil
	}
	var fp drivers.Fingerprint
	if err := d.call(ctx, 0, "fingerprint", struct{}{}, &fp); err != nil {
		return err
	}
	var recs []recovered
	if err := d.call(ctx, 0, "recover", struct{}{}, &recs); err != nil {
		return err
	}
	fp.Driver = Name
	d.procMu.Lock()
	fp.Files = d.hello.Files
	d.procMu.Unlock()
	if fp.Attributes == nil {
		fp.Attributes = map[string]string{}
	}
	d.procMu.Lock()
	fp.Attributes["plugin"] = d.hello.Name
	d.procMu.Unlock()
	d.fp, d.capacity = fp, drivers.NewCapacity(fp.Total)
	d.mu.Lock()
	for _, r := range recs {
		t := &task{res: r.Resources, st: r.Status, done: make(chan struct{})}
		d.tasks[r.Status.ID] = t
		if r.Status.State.Final() {
			close(t.done)
		} else {
			d.capacity.Force(r.Status.ID, r.Resources)
		}
	}
	d.mu.Unlock()
	d.loaded = true
	d.wg.Go(d.poll)
	return nil
}

// Fingerprint reports the plugin's capacity (read once) and the free
// capacity after the tasks this driver admitted.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	if err := d.ready(ctx); err != nil {
		return drivers.Fingerprint{}, err
	}
	fp := d.fp
	fp.Attributes = maps.Clone(d.fp.Attributes)
	fp.Total, fp.Free = d.capacity.Total(), d.capacity.Free()
	return fp, nil
}

// Start validates spec and capacity on the Go side, then asks the plugin.
func (d *Driver) Start(ctx context.Context, spec drivers.TaskSpec) (drivers.Status, error) {
	if err := d.ready(ctx); err != nil {
		return drivers.Status{}, err
	}
	d.procMu.Lock()
	options := d.hello.Options
	d.procMu.Unlock()
	if err := drivers.ValidateSpec(spec, d.fp.Kinds, options...); err != nil {
		return drivers.Status{}, fmt.Errorf("exec: %w", err)
	}
	d.procMu.Lock()
	files := d.hello.Files
	d.procMu.Unlock()
	if !files {
		if err := drivers.RefuseFiles(Name+" (plugin "+d.hello.Name+" does not declare files)", spec); err != nil {
			return drivers.Status{}, fmt.Errorf("exec: %w", err)
		}
	}
	d.mu.Lock()
	if _, ok := d.tasks[spec.ID]; ok {
		d.mu.Unlock()
		return drivers.Status{}, fmt.Errorf("exec: %w: task %q; use a new id", drivers.ErrExists, spec.ID)
	}
	if err := d.capacity.Reserve(spec.ID, spec.Resources); err != nil {
		d.mu.Unlock()
		return drivers.Status{}, fmt.Errorf("exec: task %q: %w", spec.ID, err)
	}
	t := &task{res: spec.Resources, starting: true, st: drivers.Status{ID: spec.ID, State: drivers.StatePending}, done: make(chan struct{})}
	d.tasks[spec.ID] = t
	d.emit(spec.ID, t, drivers.StatePending)
	d.mu.Unlock()

	params := map[string]any{"spec": spec}
	if files {
		work, err := d.prepareWorkDir(spec)
		if err != nil {
			d.mu.Lock()
			delete(d.tasks, spec.ID)
			d.mu.Unlock()
			d.capacity.Release(spec.ID)
			return drivers.Status{}, err
		}
		params["work_dir"] = work
	}
	var st drivers.Status
	if err := d.call(ctx, 0, "start", params, &st); err != nil {
		d.mu.Lock()
		delete(d.tasks, spec.ID)
		d.mu.Unlock()
		d.capacity.Release(spec.ID)
		return drivers.Status{}, err
	}
	d.mu.Lock()
	t.starting = false
	d.mu.Unlock()
	d.update(spec.ID, st)
	return st, nil
}

// update records a status the plugin reported: emits an event when the
// state changed, and releases capacity once it is final.
func (d *Driver) update(id string, st drivers.Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	if !ok || t.st.State.Final() {
		return
	}
	st.ID = id
	changed := st.State != t.st.State
	t.st = st
	if changed {
		d.emit(id, t, st.State)
	}
	if st.State.Final() {
		d.capacity.Release(id)
		close(t.done)
	}
}

func (d *Driver) emit(id string, t *task, s drivers.State) {
	d.Emit(drivers.Event{TaskID: id, State: s, Time: time.Now(), Resources: t.res})
}

// poll refreshes the status of every non-final task until Close.
func (d *Driver) poll() {
	tick := time.NewTicker(d.cfg.PollInterval.D())
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-tick.C:
		}
		d.mu.Lock()
		var ids []string
		for id, t := range d.tasks {
			if !t.starting && !t.st.State.Final() {
				ids = append(ids, id)
			}
		}
		d.mu.Unlock()
		for _, id := range ids {
			if _, err := d.refresh(id); err != nil {
				select {
				case <-d.stop:
					return // the error is the cancellation
				default:
					d.log.Warn("poll task status", "task", id, "err", err)
				}
			}
		}
	}
}

// refresh asks the plugin for id's status and records it.
func (d *Driver) refresh(id string) (drivers.Status, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var st drivers.Status
	if err := d.call(ctx, 0, "status", map[string]string{"id": id}, &st); err != nil {
		return drivers.Status{}, err
	}
	d.update(id, st)
	return st, nil
}

func (d *Driver) get(ctx context.Context, id string) (*task, error) {
	if err := d.ready(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("exec: %w: %q", drivers.ErrNotFound, id)
	}
	return t, nil
}

// Status returns id's status, asking the plugin unless it is final.
func (d *Driver) Status(ctx context.Context, id string) (drivers.Status, error) {
	t, err := d.get(ctx, id)
	if err != nil {
		return drivers.Status{}, err
	}
	d.mu.Lock()
	st := t.st
	d.mu.Unlock()
	if st.State.Final() {
		return st, nil
	}
	if _, err := d.refresh(id); err != nil {
		return drivers.Status{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return t.st, nil
}

// Wait blocks until id is final (the poller notices it).
func (d *Driver) Wait(ctx context.Context, id string) (drivers.Status, error) {
	t, err := d.get(ctx, id)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := drivers.WaitDone(ctx, t.done, d.stop); err != nil {
		return drivers.Status{}, fmt.Errorf("exec: wait %s: %w", id, err)
	}
	return d.Status(ctx, id)
}

// Logs reads id's output through the plugin's "logs" method, in chunks;
// with Follow it polls until the plugin reports the end.
func (d *Driver) Logs(ctx context.Context, id string, opts drivers.LogOptions) (io.ReadCloser, error) {
	if _, err := d.get(ctx, id); err != nil {
		return nil, err
	}
	return &logReader{ctx: ctx, d: d, id: id, offset: opts.Offset, follow: opts.Follow}, nil
}

// Stop asks the plugin to stop id (it escalates after grace) and records
// the resulting status.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	t, err := d.get(ctx, id)
	if err != nil {
		return err
	}
	d.mu.Lock()
	final := t.st.State.Final()
	d.mu.Unlock()
	if final {
		return nil
	}
	params := map[string]any{"id": id, "grace_ms": grace.Milliseconds()}
	if err := d.call(ctx, grace, "stop", params, nil); err != nil {
		return err
	}
	_, err = d.refresh(id)
	return err
}

// Recover returns every task the plugin reported at start-up (and what
// happened to them since), sorted by id.
func (d *Driver) Recover(ctx context.Context) ([]drivers.Status, error) {
	if err := d.ready(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	ids := slices.Collect(maps.Keys(d.tasks))
	d.mu.Unlock()
	out, err := drivers.StatusesOf(ctx, ids, d.Status)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Close stops polling and shuts the plugin down; its tasks keep running.
// Idempotent.
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
	d.procMu.Lock()
	defer d.procMu.Unlock()
	if d.proc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.proc.close(ctx)
		d.proc = nil
	}
	return nil
}

// logReader pulls chunks from the plugin.
type logReader struct {
	ctx    context.Context
	d      *Driver
	id     string
	offset int64
	follow bool
	buf    []byte
	eof    bool
}

func (r *logReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		var c logChunk
		params := map[string]any{"id": r.id, "offset": r.offset, "limit": 64 << 10}
		if err := r.d.call(r.ctx, 0, "logs", params, &c); err != nil {
			return 0, err
		}
		r.buf, r.offset = c.Data, r.offset+int64(len(c.Data))
		r.eof = c.EOF || !r.follow && len(c.Data) == 0
		if len(r.buf) > 0 || r.eof {
			continue
		}
		t := time.NewTimer(r.d.cfg.PollInterval.D() / 2)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return 0, r.ctx.Err()
		case <-r.d.stop:
			t.Stop()
			return 0, drivers.ErrClosed
		case <-t.C:
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *logReader) Close() error { return nil }
