package slurm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

var _ drivers.Driver = (*Driver)(nil)
var _ drivers.Observable = (*Driver)(nil)

// Config configures the Slurm driver.
type Config struct {
	// StateDir holds task records, batch scripts and output files. It must
	// be shared with the compute nodes. Required.
	StateDir string `json:"state_dir"`
	// Partition, Account and QOS are passed to sbatch unless a task's
	// options override them. An empty Partition means Slurm's default
	// partition; Fingerprint describes that partition.
	Partition string `json:"partition,omitempty"`
	Account   string `json:"account,omitempty"`
	QOS       string `json:"qos,omitempty"`
	// SlurmConf, when set, is exported as SLURM_CONF to every command.
	SlurmConf string `json:"slurm_conf,omitempty"`
	// BinDir is where sbatch, scontrol, scancel and sacct live; empty means $PATH.
	BinDir string `json:"bin_dir,omitempty"`
	// MaxCPUs and MaxMemoryMB cap what pcm offers of the partition (0: all).
	MaxCPUs     float64 `json:"max_cpus,omitempty"`
	MaxMemoryMB int64   `json:"max_memory_mb,omitempty"`
	// DefaultMemoryMB is requested for tasks that ask for no memory.
	DefaultMemoryMB int64 `json:"default_memory_mb,omitempty"`
	// Accounting selects sacct: "auto" (use it when slurmctld reports an
	// accounting storage), "on" or "off".
	Accounting string `json:"accounting,omitempty"`
	// PollInterval is how often Wait and followed Logs ask Slurm.
	PollInterval time.Duration `json:"-"`
	// CommandTimeout bounds each Slurm command.
	CommandTimeout time.Duration `json:"-"`
	// InfoTTL is how long partition and node information is cached.
	InfoTTL time.Duration `json:"-"`
}

// DefaultConfig returns a Config with every default filled in except StateDir.
func DefaultConfig() Config {
	return Config{
		DefaultMemoryMB: 128,
		Accounting:      "auto",
		PollInterval:    200 * time.Millisecond,
		CommandTimeout:  30 * time.Second,
		InfoTTL:         10 * time.Second,
	}
}

func (c *Config) applyDefaults() {
	d := DefaultConfig()
	if c.DefaultMemoryMB == 0 {
		c.DefaultMemoryMB = d.DefaultMemoryMB
	}
	if c.Accounting == "" {
		c.Accounting = d.Accounting
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = d.CommandTimeout
	}
	if c.InfoTTL == 0 {
		c.InfoTTL = d.InfoTTL
	}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	switch {
	case c.StateDir == "":
		return errors.New("slurm: state_dir is empty; set it to a directory shared with the compute nodes")
	case c.MaxCPUs < 0:
		return fmt.Errorf("slurm: max_cpus is %v; use 0 (all) or a positive number", c.MaxCPUs)
	case c.MaxMemoryMB < 0:
		return fmt.Errorf("slurm: max_memory_mb is %d; use 0 (all) or a positive number", c.MaxMemoryMB)
	case c.DefaultMemoryMB < 0:
		return fmt.Errorf("slurm: default_memory_mb is %d; use a positive number", c.DefaultMemoryMB)
	case c.Accounting != "" && c.Accounting != "auto" && c.Accounting != "on" && c.Accounting != "off":
		return fmt.Errorf("slurm: accounting is %q; use auto, on or off", c.Accounting)
	case c.PollInterval < 0 || c.CommandTimeout < 0 || c.InfoTTL < 0:
		return errors.New("slurm: poll_interval, command_timeout and info_ttl must not be negative")
	}
	return nil
}

// fileConfig is the JSON form of Config (durations as Go duration strings).
type fileConfig struct {
	Config
	PollInterval   string `json:"poll_interval,omitempty"`
	CommandTimeout string `json:"command_timeout,omitempty"`
	InfoTTL        string `json:"info_ttl,omitempty"`
}

// FromConfig builds a driver from its JSON config (the agent's registry
// converts the YAML driver section to JSON). stateDir is used when the
// config names none. Unknown keys are an error.
func FromConfig(raw []byte, stateDir string, logger *slog.Logger) (drivers.Driver, error) {
	var fc fileConfig
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fc); err != nil {
			return nil, fmt.Errorf("slurm: decode config: %w", err)
		}
	}
	cfg := fc.Config
	if cfg.StateDir == "" {
		cfg.StateDir = stateDir
	}
	for _, d := range []struct {
		name string
		text string
		dst  *time.Duration
	}{
		{"poll_interval", fc.PollInterval, &cfg.PollInterval},
		{"command_timeout", fc.CommandTimeout, &cfg.CommandTimeout},
		{"info_ttl", fc.InfoTTL, &cfg.InfoTTL},
	} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil {
			return nil, fmt.Errorf("slurm: %s %q is not a duration; use e.g. \"500ms\" or \"30s\"", d.name, d.text)
		}
		*d.dst = v
	}
	return New(cfg, logger)
}

// Driver runs pcm tasks as Slurm batch jobs.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	cli   cli
	store store

	admitMu sync.Mutex // serializes the capacity check and sbatch

	mu        sync.Mutex
	tasks     map[string]*task
	closed    bool
	info      *clusterInfo
	acct      *bool // sacct available; nil until probed
	observers drivers.Observers
}

// New checks cfg and returns a driver. It runs no Slurm command.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Driver{
		cfg:   cfg,
		log:   logger.With("component", "driver", "driver", "slurm"),
		cli:   cli{binDir: cfg.BinDir, slurmConf: cfg.SlurmConf, timeout: cfg.CommandTimeout},
		store: store{dir: cfg.StateDir},
		tasks: map[string]*task{},
	}, nil
}

// Name returns "slurm".
func (d *Driver) Name() string { return "slurm" }

// Observe registers fn for every state change the driver sees.
func (d *Driver) Observe(fn func(drivers.Event)) { d.observers.Observe(fn) }

func (d *Driver) emit(ev drivers.Event) { d.observers.Emit(ev) }

// Close marks the driver closed. Slurm jobs keep running; Recover on a new
// driver with the same state dir finds them. Close is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

func (d *Driver) checkOpen() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return drivers.ErrClosed
	}
	return nil
}

// Fingerprint reports the partition's nodes as Total and Total minus this
// driver's unfinished tasks as Free.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	if err := d.checkOpen(); err != nil {
		return drivers.Fingerprint{}, err
	}
	info, err := d.clusterInfo(ctx, false)
	if err != nil {
		return drivers.Fingerprint{}, err
	}
	if err := d.refreshUnfinished(ctx); err != nil {
		return drivers.Fingerprint{}, err
	}
	total := d.total(info)
	free := subtract(total, d.reserved())
	attrs := map[string]string{
		"slurm.partition":  info.defaultPartition(d.cfg.Partition),
		"slurm.partitions": strings.Join(info.partitionNames(), ","),
		"slurm.nodes":      fmt.Sprint(len(info.nodesOf(info.defaultPartition(d.cfg.Partition)))),
		"slurm.version":    info.version,
		"slurm.sacct":      fmt.Sprint(d.accounting(ctx)),
	}
	if d.cfg.Account != "" {
		attrs["slurm.account"] = d.cfg.Account
	}
	if d.cfg.QOS != "" {
		attrs["slurm.qos"] = d.cfg.QOS
	}
	return drivers.Fingerprint{
		Driver: "slurm", Total: total, Free: free, Attributes: attrs,
		Kinds: kinds,
		Files: true,
	}, nil
}

// total is the configured partition's capacity, capped by the config.
func (d *Driver) total(info *clusterInfo) drivers.Resources {
	var r drivers.Resources
	for _, n := range info.nodesOf(info.defaultPartition(d.cfg.Partition)) {
		r.CPUs += float64(n.cpus)
		r.MemoryMB += n.memoryMB
		r.GPUs += n.gpus
		if r.GPUModel == "" {
			r.GPUModel = n.gpuModel
		}
	}
	if d.cfg.MaxCPUs > 0 && r.CPUs > d.cfg.MaxCPUs {
		r.CPUs = d.cfg.MaxCPUs
	}
	if d.cfg.MaxMemoryMB > 0 && r.MemoryMB > d.cfg.MaxMemoryMB {
		r.MemoryMB = d.cfg.MaxMemoryMB
	}
	return r
}

// reserved sums the resources of the driver's unfinished tasks.
func (d *Driver) reserved() drivers.Resources {
	d.mu.Lock()
	defer d.mu.Unlock()
	var r drivers.Resources
	for _, t := range d.tasks {
		if st := t.status(); !st.State.Final() {
			res := t.resources()
			r.CPUs += res.CPUs
			r.MemoryMB += res.MemoryMB
			r.GPUs += res.GPUs
		}
	}
	return r
}

func subtract(a, b drivers.Resources) drivers.Resources {
	a.CPUs -= b.CPUs
	a.MemoryMB -= b.MemoryMB
	a.GPUs -= b.GPUs
	return a
}

// kinds are the task forms the driver runs.
var kinds = []string{drivers.KindCommand, drivers.KindScript}

var (
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	slurmArg = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// invalid wraps ErrInvalidSpec with a message that names the field and the fix.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{drivers.ErrInvalidSpec}, args...)...)
}

// checkSpec validates everything that needs no cluster information and
// returns the resources the task is accounted for (memory defaulted).
// Fractional CPUs are accounted as requested and rounded up for Slurm,
// which allocates whole CPUs.
func (d *Driver) checkSpec(spec drivers.TaskSpec) (drivers.Resources, error) {
	r := spec.Resources
	if err := drivers.ValidateSpec(spec, kinds, "partition", "account", "qos"); err != nil {
		return r, err
	}
	switch {
	case r.CPUs == 0:
		return r, invalid("task %q: resources.cpus is 0; Slurm needs at least one CPU, use a value > 0", spec.ID)
	case r.GPUModel != "" && !slurmArg.MatchString(r.GPUModel):
		return r, invalid("task %q: resources.gpu_model %q has characters Slurm GRES names cannot hold", spec.ID, r.GPUModel)
	}
	for k := range spec.Env {
		if !envKeyRe.MatchString(k) {
			return r, invalid("task %q: env key %q is not a shell variable name; use letters, digits and '_'", spec.ID, k)
		}
	}
	for k, v := range spec.Options {
		if !slurmArg.MatchString(v) {
			return r, invalid("task %q: options.%s %q must be letters, digits, '.', '_' or '-'", spec.ID, k, v)
		}
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = d.cfg.DefaultMemoryMB
	}
	return r, nil
}

// Start validates spec, checks capacity, writes the task's record and
// submits it with sbatch. It returns once Slurm accepted the job.
func (d *Driver) Start(ctx context.Context, spec drivers.TaskSpec) (drivers.Status, error) {
	if err := d.checkOpen(); err != nil {
		return drivers.Status{}, err
	}
	res, err := d.checkSpec(spec)
	if err != nil {
		return drivers.Status{}, err
	}
	opt := func(k, def string) string {
		if v, ok := spec.Options[k]; ok {
			return v
		}
		return def
	}
	rec := &record{
		Spec: spec, Resources: res,
		Partition: opt("partition", d.cfg.Partition),
		Account:   opt("account", d.cfg.Account),
		QOS:       opt("qos", d.cfg.QOS),
		JobName:   "pcm-" + spec.ID,
	}
	info, err := d.clusterInfo(ctx, false)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := info.fits(rec.Partition, res); err != nil {
		return drivers.Status{}, err
	}

	d.admitMu.Lock()
	defer d.admitMu.Unlock()
	d.mu.Lock()
	_, exists := d.tasks[spec.ID]
	d.mu.Unlock()
	if exists {
		return drivers.Status{}, fmt.Errorf("%w: task %q is already known to the slurm driver; use a new id", drivers.ErrExists, spec.ID)
	}
	if err := d.refreshUnfinished(ctx); err != nil {
		return drivers.Status{}, err
	}
	if free := subtract(d.total(info), d.reserved()); res.CPUs > free.CPUs || res.MemoryMB > free.MemoryMB || res.GPUs > free.GPUs {
		return drivers.Status{}, fmt.Errorf("%w: task %q needs %v CPUs, %d MB, %d GPUs; free: %v CPUs, %d MB, %d GPUs; wait for tasks to end or ask for less",
			drivers.ErrCapacity, spec.ID, res.CPUs, res.MemoryMB, res.GPUs, free.CPUs, free.MemoryMB, free.GPUs)
	}
	if err := d.store.create(spec.ID); err != nil {
		return drivers.Status{}, err
	}
	if err := drivers.StageInputs(spec, d.store.workDir(spec.ID)); err != nil {
		_ = d.store.remove(spec.ID)
		return drivers.Status{}, fmt.Errorf("slurm: task %q: %w", spec.ID, err)
	}
	t, err := d.submit(ctx, rec)
	if err != nil {
		if rmErr := d.store.remove(spec.ID); rmErr != nil {
			d.log.Warn("remove task dir after failed submit", "task", spec.ID, "err", rmErr)
		}
		return drivers.Status{}, err
	}
	d.mu.Lock()
	d.tasks[spec.ID] = t
	d.mu.Unlock()
	d.log.Info("task submitted", "task", spec.ID, "job", rec.JobID, "partition", rec.Partition,
		"cpus", res.CPUs, "memory_mb", res.MemoryMB)
	d.emit(drivers.Event{TaskID: spec.ID, State: drivers.StatePending, Time: time.Now(), Resources: res})
	return t.status(), nil
}

// get returns a known task or ErrNotFound.
func (d *Driver) get(id string) (*task, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, drivers.ErrClosed
	}
	t, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a task of this slurm driver (call Recover after a restart)", drivers.ErrNotFound, id)
	}
	return t, nil
}

// Recover loads every record in the state dir, reattaches to its job and
// returns every task's status, sorted by id.
func (d *Driver) Recover(ctx context.Context) ([]drivers.Status, error) {
	if err := d.checkOpen(); err != nil {
		return nil, err
	}
	recs, err := d.store.loadAll()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	for _, rec := range recs {
		if _, ok := d.tasks[rec.Spec.ID]; !ok {
			d.tasks[rec.Spec.ID] = newTask(d, rec)
		}
	}
	ids := slices.Collect(maps.Keys(d.tasks))
	d.mu.Unlock()
	out, err := drivers.StatusesOf(ctx, ids, d.Status)
	if err != nil {
		return out, err
	}
	d.log.Info("recovered tasks", "count", len(out))
	return out, nil
}
