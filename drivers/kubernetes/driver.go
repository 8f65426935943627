package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pcm-mesh/pcm/drivers"
)

var _ drivers.Driver = (*Driver)(nil)
var _ drivers.Observable = (*Driver)(nil)

// Labels and annotations the driver puts on its Jobs and pods.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "pcm"
	LabelTask      = "pcm.mesh/task"
	LabelInstance  = "pcm.mesh/instance"
	AnnotationTask = "pcm.mesh/task-id"
)

// Config configures the Kubernetes driver.
type Config struct {
	// StateDir holds task records and saved logs. Required.
	StateDir string `json:"state_dir"`
	// Kubeconfig is a kubeconfig file; empty means in-cluster config.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context selects a kubeconfig context; empty means the current one.
	Context string `json:"context,omitempty"`
	// Namespace is where Jobs are created unless a task's options.namespace
	// says otherwise. Default: the kubeconfig context's namespace, else
	// "default".
	Namespace string `json:"namespace,omitempty"`
	// DefaultImage runs command and script tasks. Default "busybox:1.36".
	DefaultImage string `json:"default_image,omitempty"`
	// ServiceAccount is the pods' service account; empty means the default.
	ServiceAccount string `json:"service_account,omitempty"`
	// GPUResource is the extended resource name of GPUs. Default "nvidia.com/gpu".
	GPUResource string `json:"gpu_resource,omitempty"`
	// MaxCPUs and MaxMemoryMB cap what pcm offers of the cluster (0: all).
	MaxCPUs     float64 `json:"max_cpus,omitempty"`
	MaxMemoryMB int64   `json:"max_memory_mb,omitempty"`
	// DefaultMemoryMB is requested for tasks that ask for no memory.
	DefaultMemoryMB int64 `json:"default_memory_mb,omitempty"`
	// PollInterval is how often Wait and followed Logs ask the API server.
	PollInterval drivers.Duration `json:"poll_interval,omitempty"`
	// UnschedulableTimeout fails a task whose pod the scheduler has found
	// no node for during this long (its Job is deleted). Default 2m.
	UnschedulableTimeout drivers.Duration `json:"unschedulable_timeout,omitempty"`
	// JobTTL lets the cluster delete a finished Job (and its pods) after
	// this long (ttlSecondsAfterFinished); the driver keeps the task's final
	// status and logs in its state dir. Default 24h; negative keeps Jobs.
	JobTTL drivers.Duration `json:"job_ttl,omitempty"`
}

// DefaultConfig returns a Config with every default filled in except StateDir.
func DefaultConfig() Config {
	return Config{
		Namespace:       "default",
		DefaultImage:    "busybox:1.36",
		GPUResource:     "nvidia.com/gpu",
		DefaultMemoryMB: 128,
		PollInterval:    drivers.Duration(500 * time.Millisecond),

		UnschedulableTimeout: drivers.Duration(2 * time.Minute),
		JobTTL:               drivers.Duration(24 * time.Hour),
	}
}

func (c *Config) applyDefaults() {
	d := DefaultConfig()
	if c.Namespace == "" {
		c.Namespace = d.Namespace
	}
	if c.DefaultImage == "" {
		c.DefaultImage = d.DefaultImage
	}
	if c.GPUResource == "" {
		c.GPUResource = d.GPUResource
	}
	if c.DefaultMemoryMB == 0 {
		c.DefaultMemoryMB = d.DefaultMemoryMB
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.UnschedulableTimeout == 0 {
		c.UnschedulableTimeout = d.UnschedulableTimeout
	}
	if c.JobTTL == 0 {
		c.JobTTL = d.JobTTL
	}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	switch {
	case c.StateDir == "":
		return errors.New("kubernetes: state_dir is empty; set it to a directory the agent owns")
	case !dnsLabel.MatchString(c.Namespace):
		return fmt.Errorf("kubernetes: namespace %q is not a DNS label; use lower-case letters, digits and '-'", c.Namespace)
	case c.MaxCPUs < 0:
		return fmt.Errorf("kubernetes: max_cpus is %v; use 0 (all) or a positive number", c.MaxCPUs)
	case c.MaxMemoryMB < 0:
		return fmt.Errorf("kubernetes: max_memory_mb is %d; use 0 (all) or a positive number", c.MaxMemoryMB)
	case c.DefaultMemoryMB < 0:
		return fmt.Errorf("kubernetes: default_memory_mb is %d; use a positive number", c.DefaultMemoryMB)
	case c.PollInterval < 0:
		return fmt.Errorf("kubernetes: poll_interval is %s; use a positive duration", c.PollInterval.D())
	case c.UnschedulableTimeout < 0:
		return fmt.Errorf("kubernetes: unschedulable_timeout is %s; use a positive duration", c.UnschedulableTimeout.D())
	}
	return nil
}

// RESTConfig loads the client configuration: the kubeconfig file when set,
// else the in-cluster service account.
func (c Config) RESTConfig() (*rest.Config, error) {
	if c.Kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: no kubeconfig set and not running in a cluster (%w); set kubeconfig", err)
		}
		return rc, nil
	}
	rc, err := c.clientConfig().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: load kubeconfig %s: %w", c.Kubeconfig, err)
	}
	return rc, nil
}

func (c Config) clientConfig() clientcmd.ClientConfig {
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: c.Context},
	)
}

// FromConfig builds a driver from its JSON config (the agent's registry
// converts the YAML driver section to JSON). stateDir is used when the
// config names none. Unknown keys are an error. It does not contact the
// cluster.
func FromConfig(raw []byte, stateDir string, logger *slog.Logger) (drivers.Driver, error) {
	var cfg Config
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("kubernetes: decode config: %w", err)
		}
	}
	if cfg.StateDir == "" {
		cfg.StateDir = stateDir
	}
	return New(cfg, logger)
}

// Driver runs pcm tasks as Kubernetes Jobs.
type Driver struct {
	cfg    Config
	log    *slog.Logger
	client API
	store  store
	// instance tells this driver's Jobs and pods from other agents' on the
	// same cluster (label pcm.mesh/instance; suffix of Job names).
	instance string

	admitMu sync.Mutex // serializes the capacity check and Job creation

	mu        sync.Mutex
	tasks     map[string]*task
	closed    bool
	observers drivers.Observers
}

// New checks cfg, loads the client configuration and returns a driver. It
// makes no API call.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	if cfg.Namespace == "" && cfg.Kubeconfig != "" {
		ns, _, err := cfg.clientConfig().Namespace()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: load kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		cfg.Namespace = ns
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc, err := cfg.RESTConfig()
	if err != nil {
		return nil, err
	}
	if rc.QPS == 0 {
		// client-go's default (5/s, bursts of 10) starves Wait and Status
		// of a few dozen tasks polled every poll_interval.
		rc.QPS, rc.Burst = 50, 100
	}
	client, err := newRESTAPI(rc)
	if err != nil {
		return nil, err
	}
	return NewWithAPI(cfg, client, logger)
}

// NewWithAPI is New with a ready client (tests pass client-go's fake
// clientset through an adapter).
func NewWithAPI(cfg Config, client API, logger *slog.Logger) (*Driver, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st := store{dir: cfg.StateDir}
	instance, err := st.instance()
	if err != nil {
		return nil, err
	}
	return &Driver{
		cfg:      cfg,
		log:      logger.With("component", "driver", "driver", "kubernetes"),
		client:   client,
		store:    st,
		instance: instance,
		tasks:    map[string]*task{},
	}, nil
}

// Name returns "kubernetes".
func (d *Driver) Name() string { return "kubernetes" }

// Observe registers fn for every state change the driver sees.
func (d *Driver) Observe(fn func(drivers.Event)) { d.observers.Observe(fn) }

// Close marks the driver closed; Jobs keep running. Close is idempotent.
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

// get returns a known task or ErrNotFound.
func (d *Driver) get(id string) (*task, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, drivers.ErrClosed
	}
	t, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a task of this kubernetes driver (call Recover after a restart)", drivers.ErrNotFound, id)
	}
	return t, nil
}

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	envName    = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	notDNSChar = regexp.MustCompile(`[^a-z0-9-]+`)
)

// kinds are the task forms the driver runs.
var kinds = []string{drivers.KindCommand, drivers.KindScript, drivers.KindImage}

// jobName turns a task id into a DNS-1123 label (at most 63 bytes):
// "pcm-" + the id made lower-case with other characters as '-' + "-" +
// the driver's instance id, so agents sharing a namespace never collide;
// when the id changed or is too long, a hash of it keeps names unique.
func jobName(instance, id string) string {
	s := strings.Trim(notDNSChar.ReplaceAllString(strings.ToLower(id), "-"), "-")
	if s != id || len(s) > 50 {
		sum := sha256.Sum256([]byte(id))
		if len(s) > 40 {
			s = strings.TrimRight(s[:40], "-")
		}
		s += "-" + hex.EncodeToString(sum[:])[:10]
	}
	return "pcm-" + strings.TrimLeft(s, "-") + "-" + instance
}

// jobName is the Job name of task id on this driver.
func (d *Driver) jobName(id string) string { return jobName(d.instance, id) }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{drivers.ErrInvalidSpec}, args...)...)
}

// checkSpec validates a spec and returns the resources it is accounted for.
func (d *Driver) checkSpec(spec drivers.TaskSpec) (drivers.Resources, error) {
	r := spec.Resources
	if err := drivers.ValidateSpec(spec, kinds, "namespace", "service_account"); err != nil {
		return r, err
	}
	if r.CPUs == 0 && r.MemoryMB == 0 {
		return r, invalid("task %q: resources.cpus and resources.memory_mb are 0; request some CPU or memory so the scheduler can place the pod", spec.ID)
	}
	for k := range spec.Env {
		if !envName.MatchString(k) {
			return r, invalid("task %q: env name %q is not allowed by Kubernetes; use letters, digits, '_', '-' and '.', not starting with a digit", spec.ID, k)
		}
	}
	if ns, ok := spec.Options["namespace"]; ok && !dnsLabel.MatchString(ns) {
		return r, invalid("task %q: options.namespace %q is not a DNS label; use lower-case letters, digits and '-'", spec.ID, ns)
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = d.cfg.DefaultMemoryMB
	}
	return r, nil
}

// Start validates spec, checks capacity, records the task and creates its Job.
func (d *Driver) Start(ctx context.Context, spec drivers.TaskSpec) (drivers.Status, error) {
	if err := d.checkOpen(); err != nil {
		return drivers.Status{}, err
	}
	res, err := d.checkSpec(spec)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := drivers.RefuseFiles(d.Name(), spec); err != nil {
		return drivers.Status{}, fmt.Errorf("kubernetes: %w", err)
	}
	ns := d.cfg.Namespace
	if v, ok := spec.Options["namespace"]; ok {
		ns = v
	}
	rec := &record{Spec: spec, Resources: res, Namespace: ns, JobName: d.jobName(spec.ID)}

	d.admitMu.Lock()
	defer d.admitMu.Unlock()
	d.mu.Lock()
	_, exists := d.tasks[spec.ID]
	d.mu.Unlock()
	if exists {
		return drivers.Status{}, fmt.Errorf("%w: task %q is already known to the kubernetes driver; use a new id", drivers.ErrExists, spec.ID)
	}
	fp, rooms, err := d.cluster(ctx)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := fits(res, fp.Total, fp.Free); err != nil {
		return drivers.Status{}, fmt.Errorf("task %q: %w", spec.ID, err)
	}
	if err := fitsANode(res, rooms); err != nil {
		return drivers.Status{}, fmt.Errorf("task %q: %w", spec.ID, err)
	}
	if err := d.store.create(spec.ID); err != nil {
		return drivers.Status{}, err
	}
	rec.CreatedAt = time.Now().UTC()
	if err := d.store.save(rec); err != nil {
		return drivers.Status{}, err
	}
	job := d.buildJob(rec)
	if _, err := d.client.BatchV1().Jobs(ns).Create(ctx, job, createOpts); err != nil {
		if rmErr := d.store.remove(spec.ID); rmErr != nil {
			d.log.Warn("remove task dir after failed create", "task", spec.ID, "err", rmErr)
		}
		return drivers.Status{}, createError(spec.ID, ns, rec.JobName, err)
	}
	t := newTask(d, rec)
	d.mu.Lock()
	d.tasks[spec.ID] = t
	d.mu.Unlock()
	d.log.Info("task submitted", "task", spec.ID, "job", ns+"/"+rec.JobName, "cpus", res.CPUs, "memory_mb", res.MemoryMB)
	d.observers.Emit(drivers.Event{TaskID: spec.ID, State: drivers.StatePending, Time: time.Now(), Resources: res})
	return t.status(), nil
}

// fits checks r against free, naming the first dimension that does not fit.
func fits(r, total, free drivers.Resources) error {
	switch {
	case r.CPUs > free.CPUs+1e-9:
		return fmt.Errorf("%w: resources.cpus %g requested, %g of %g free", drivers.ErrCapacity, r.CPUs, free.CPUs, total.CPUs)
	case r.MemoryMB > free.MemoryMB:
		return fmt.Errorf("%w: resources.memory_mb %d requested, %d of %d free", drivers.ErrCapacity, r.MemoryMB, free.MemoryMB, total.MemoryMB)
	case r.GPUs > free.GPUs:
		return fmt.Errorf("%w: resources.gpus %d requested, %d of %d free", drivers.ErrCapacity, r.GPUs, free.GPUs, total.GPUs)
	}
	return nil
}

// fitsANode checks that some node could hold r on its own: a pod cannot
// span nodes, so a task that fits the cluster's sum but no node would stay
// pending for ever.
func fitsANode(r drivers.Resources, rooms []nodeRoom) error {
	if len(rooms) == 0 {
		return fmt.Errorf("%w: the cluster has no Ready, schedulable node", drivers.ErrCapacity)
	}
	best := rooms[0]
	for _, room := range rooms {
		if room.holds(r) {
			return nil
		}
		if room.cpuMilli > best.cpuMilli || room.cpuMilli == best.cpuMilli && room.memBytes > best.memBytes {
			best = room
		}
	}
	b := best.resources()
	return fmt.Errorf("%w: no node can hold resources.cpus %g, memory_mb %d, gpus %d together; the roomiest of %d nodes, %s, has %g CPUs, %d MB, %d GPUs",
		drivers.ErrCapacity, r.CPUs, r.MemoryMB, r.GPUs, len(rooms), best.node, b.CPUs, b.MemoryMB, b.GPUs)
}

// createError explains a refused Job: a full quota is a capacity refusal,
// a missing namespace a bad spec, a forbidden create the driver's role.
func createError(id, ns, name string, err error) error {
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return fmt.Errorf("%w: task %q: the resource quota of namespace %s is used up: %w", drivers.ErrCapacity, id, ns, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("kubernetes: create job %s/%s for task %q: %w; grant the driver's account \"create\" on jobs.batch in namespace %s", ns, name, id, err, ns)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: task %q: namespace %s does not exist on the cluster; create it or set options.namespace to one that does: %w", drivers.ErrInvalidSpec, id, ns, err)
	}
	return fmt.Errorf("kubernetes: create job %s/%s for task %q: %w", ns, name, id, err)
}

// Recover loads every record in the state dir and returns every task's
// status, sorted by id.
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
