package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pcm-mesh/pcm/drivers"
)

var createOpts = metav1.CreateOptions{FieldManager: "pcm"}

// buildJob is the Job for one task.
func (d *Driver) buildJob(rec *record) *batchv1.Job {
	spec := rec.Spec
	labels := map[string]string{LabelManagedBy: ManagedByValue, LabelTask: rec.JobName, LabelInstance: d.instance}
	annotations := map[string]string{AnnotationTask: spec.ID}
	c := corev1.Container{
		Name:  "task",
		Image: d.cfg.DefaultImage,
		Resources: corev1.ResourceRequirements{
			Requests: quantities(rec.Resources, d.cfg.GPUResource),
			Limits:   quantities(rec.Resources, d.cfg.GPUResource),
		},
	}
	switch spec.Kind() {
	case drivers.KindCommand:
		c.Command = spec.Command
	case drivers.KindScript:
		c.Command = []string{"/bin/sh", "-c", spec.Script}
	case drivers.KindImage:
		c.Image = spec.Image
	}
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: spec.Env[k]})
	}
	backoff := int32(0)
	pod := corev1.PodSpec{
		RestartPolicy:      corev1.RestartPolicyNever,
		Containers:         []corev1.Container{c},
		ServiceAccountName: d.cfg.ServiceAccount,
	}
	if sa, ok := spec.Options["service_account"]; ok {
		pod.ServiceAccountName = sa
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: rec.JobName, Namespace: rec.Namespace, Labels: labels, Annotations: annotations},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       pod,
			},
		},
	}
	if spec.Timeout > 0 {
		secs := int64(math.Ceil(spec.Timeout.Seconds()))
		job.Spec.ActiveDeadlineSeconds = &secs
	}
	if ttl := d.cfg.JobTTL.D(); ttl > 0 {
		secs := int32(min(math.Ceil(ttl.Seconds()), math.MaxInt32))
		job.Spec.TTLSecondsAfterFinished = &secs
	}
	return job
}

// task is the driver's handle on one Job.
type task struct {
	d   *Driver
	mu  sync.Mutex
	rec *record
	st  drivers.Status
	// seen is when st was last read from the API server.
	seen time.Time
}

// fresh reports whether st was read from the API server within d.
func (t *task) fresh(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Since(t.seen) < d
}

func newTask(d *Driver, rec *record) *task {
	t := &task{d: d, rec: rec}
	if rec.Final != nil {
		t.st = *rec.Final
	} else {
		t.st = drivers.Status{ID: rec.Spec.ID, State: drivers.StatePending, NativeID: rec.Namespace + "/" + rec.JobName}
	}
	return t
}

func (t *task) status() drivers.Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

func (t *task) resources() drivers.Resources {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rec.Resources
}

// pod returns the task's newest pod, or nil when there is none yet.
func (t *task) pod(ctx context.Context) (*corev1.Pod, error) {
	pods, err := t.d.client.CoreV1().Pods(t.rec.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelTask + "=" + t.rec.JobName})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: list pods of task %q: %w", t.rec.Spec.ID, err)
	}
	var newest *corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if newest == nil || p.CreationTimestamp.After(newest.CreationTimestamp.Time) {
			newest = p
		}
	}
	return newest, nil
}

// refresh reads the Job (and its pod) and updates the task.
func (t *task) refresh(ctx context.Context) error {
	if t.status().State.Final() {
		return nil
	}
	rec := t.rec
	t.mu.Lock()
	stopRequested := rec.StopRequested
	t.mu.Unlock()
	job, err := t.d.client.BatchV1().Jobs(rec.Namespace).Get(ctx, rec.JobName, metav1.GetOptions{})
	var next drivers.Status
	switch {
	case apierrors.IsNotFound(err):
		next = drivers.Status{State: drivers.StateLost, Message: "job " + rec.Namespace + "/" + rec.JobName + " no longer exists"}
		if stopRequested {
			next = drivers.Status{State: drivers.StateCancelled, Message: "stopped: job deleted"}
		}
	case err != nil:
		return fmt.Errorf("kubernetes: get job of task %q: %w", rec.Spec.ID, err)
	default:
		pod, err := t.pod(ctx)
		if err != nil {
			return err
		}
		next = jobStatus(job, pod, stopRequested)
		if since, msg, ok := unschedulable(pod); ok && !next.State.Final() && time.Since(since) >= t.d.cfg.UnschedulableTimeout.D() {
			if next, err = t.failUnschedulable(ctx, msg); err != nil {
				return err
			}
		}
	}
	next.ID, next.NativeID = rec.Spec.ID, rec.Namespace+"/"+rec.JobName
	if next.State.Final() && next.FinishedAt.IsZero() {
		next.FinishedAt = time.Now().UTC()
	}
	if next.State.Final() {
		if err := t.saveLogs(ctx); err != nil {
			t.d.log.Warn("save logs", "task", rec.Spec.ID, "err", err)
		}
	}
	t.mu.Lock()
	if t.st.State.Final() { // a concurrent refresh got there first
		t.mu.Unlock()
		return nil
	}
	prev := t.st.State
	t.st, t.seen = next, time.Now()
	var saveErr error
	if next.State.Final() {
		final := next
		rec.Final = &final
		saveErr = t.d.store.save(rec)
	}
	t.mu.Unlock()
	if saveErr != nil {
		return saveErr
	}
	if prev != next.State {
		t.d.log.Info("task state", "task", rec.Spec.ID, "state", next.State, "message", next.Message)
		t.d.observers.Emit(drivers.Event{TaskID: rec.Spec.ID, State: next.State, Time: time.Now(), Resources: rec.Resources})
	}
	return nil
}

// unschedulable reports since when the scheduler has found no node for pod,
// and its reason ("0/3 nodes are available: 3 Insufficient cpu").
func unschedulable(pod *corev1.Pod) (time.Time, string, bool) {
	if pod == nil || pod.Status.Phase != corev1.PodPending || pod.Spec.NodeName != "" {
		return time.Time{}, "", false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.LastTransitionTime.Time, c.Message, true
		}
	}
	return time.Time{}, "", false
}

// failUnschedulable deletes the Job of a task that never got a node and
// returns its final status.
func (t *task) failUnschedulable(ctx context.Context, msg string) (drivers.Status, error) {
	rec := t.rec
	policy := metav1.DeletePropagationForeground
	err := t.d.client.BatchV1().Jobs(rec.Namespace).Delete(ctx, rec.JobName, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return drivers.Status{}, fmt.Errorf("kubernetes: delete unschedulable job of task %q: %w", rec.Spec.ID, err)
	}
	return drivers.Status{State: drivers.StateFailed, ExitCode: -1, Message: fmt.Sprintf(
		"unschedulable: no node had room for %g CPUs and %d MB for %s (%s); the job was deleted; ask for less or raise unschedulable_timeout",
		rec.Resources.CPUs, rec.Resources.MemoryMB, t.d.cfg.UnschedulableTimeout.D(), msg)}, nil
}

// jobStatus maps a Job's conditions and its pod to a pcm status.
func jobStatus(job *batchv1.Job, pod *corev1.Pod, stopRequested bool) drivers.Status {
	var st drivers.Status
	if job.Status.StartTime != nil {
		st.StartedAt = job.Status.StartTime.Time
	}
	if job.Status.CompletionTime != nil {
		st.FinishedAt = job.Status.CompletionTime.Time
	}
	exit, reason, hasExit := -1, "", false
	if pod != nil {
		for _, cs := range pod.Status.ContainerStatuses {
			if term := cs.State.Terminated; term != nil {
				exit, reason, hasExit = int(term.ExitCode), term.Reason, true
				if !term.StartedAt.IsZero() {
					st.StartedAt = term.StartedAt.Time
				}
				if !term.FinishedAt.IsZero() {
					st.FinishedAt = term.FinishedAt.Time
				}
			}
		}
	}
	if !st.StartedAt.IsZero() && !st.FinishedAt.IsZero() {
		st.Usage.WallSeconds = st.FinishedAt.Sub(st.StartedAt).Seconds()
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			st.State, st.ExitCode = drivers.StateSucceeded, 0
			return st
		case batchv1.JobFailed:
			st.State, st.ExitCode = drivers.StateFailed, exit
			if !hasExit {
				st.ExitCode = 1
			}
			switch {
			case stopRequested:
				st.State, st.Message = drivers.StateCancelled, "stopped"
			case c.Reason == batchv1.JobReasonDeadlineExceeded:
				st.Message = "timeout: active deadline exceeded"
			case reason == "OOMKilled":
				st.Message = "out of memory (OOMKilled)"
			default:
				st.Message = fmt.Sprintf("%s: %s (exit code %d)", c.Reason, c.Message, st.ExitCode)
			}
			return st
		case batchv1.JobSuspended:
			st.State, st.Message = drivers.StatePending, "job suspended"
			return st
		}
	}
	switch {
	case pod == nil:
		st.State, st.Message = drivers.StatePending, "waiting for the job controller to create the pod"
	case pod.Status.Phase == corev1.PodRunning:
		st.State = drivers.StateRunning
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		// The pod ended but the Job has no condition yet: report running
		// until the controller marks the Job, so the final state is its.
		st.State = drivers.StateRunning
	default:
		st.State = drivers.StatePending
		for _, cs := range pod.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				st.Message = w.Reason + ": " + w.Message
			}
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && st.Message == "" {
				st.Message = c.Reason + ": " + c.Message
			}
		}
	}
	return st
}

// Status returns the task's state, asking the API server unless final.
func (d *Driver) Status(ctx context.Context, id string) (drivers.Status, error) {
	t, err := d.get(id)
	if err != nil {
		return drivers.Status{}, err
	}
	if err := t.refresh(ctx); err != nil {
		return t.status(), err
	}
	return t.status(), nil
}

// Wait polls every PollInterval until the task is final or ctx ends. API
// errors (a restarting or overloaded API server) are logged and retried,
// so a task does not fail because one request did.
func (d *Driver) Wait(ctx context.Context, id string) (drivers.Status, error) {
	tick := time.NewTicker(d.cfg.PollInterval.D())
	defer tick.Stop()
	failures := 0
	for {
		st, err := d.Status(ctx, id)
		switch {
		case err == nil && st.State.Final():
			return st, nil
		case err == nil:
			failures = 0
		case errors.Is(err, drivers.ErrNotFound) || errors.Is(err, drivers.ErrClosed) || ctx.Err() != nil:
			return st, err
		default:
			if failures++; failures == 1 || failures%20 == 0 {
				d.log.Warn("status of task failed; retrying", "task", id, "failures", failures, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

// Stop saves the pod's logs, then deletes the Job with foreground
// propagation and the grace period for its pod. The task ends cancelled.
// Stopping a finished task is a no-op.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	t, err := d.get(id)
	if err != nil {
		return err
	}
	if st, err := d.Status(ctx, id); err != nil || st.State.Final() {
		return err
	}
	t.mu.Lock()
	t.rec.StopRequested = true
	err = d.store.save(t.rec)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if err := t.saveLogs(ctx); err != nil {
		d.log.Warn("save logs before stop", "task", id, "err", err)
	}
	secs := int64(math.Ceil(grace.Seconds()))
	policy := metav1.DeletePropagationForeground
	err = d.client.BatchV1().Jobs(t.rec.Namespace).Delete(ctx, t.rec.JobName, metav1.DeleteOptions{
		GracePeriodSeconds: &secs, PropagationPolicy: &policy,
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubernetes: delete job of task %q: %w", id, err)
	}
	// The Job may linger while its pod terminates; it is cancelled either way.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.State.Final() {
		return nil
	}
	prev := t.st
	t.st = drivers.Status{ID: id, State: drivers.StateCancelled, Message: "stopped: job deleted", NativeID: prev.NativeID,
		StartedAt: prev.StartedAt, FinishedAt: time.Now().UTC(), ExitCode: -1}
	final := t.st
	t.rec.Final = &final
	if err := d.store.save(t.rec); err != nil {
		return err
	}
	d.observers.Emit(drivers.Event{TaskID: id, State: drivers.StateCancelled, Time: time.Now(), Resources: t.rec.Resources})
	return nil
}

// saveLogs copies the pod's whole log into the state dir. When the node
// serves no logs it records why, so Logs can say it after the pod is gone.
func (t *task) saveLogs(ctx context.Context) error {
	pod, err := t.pod(ctx)
	if err != nil || pod == nil {
		return err
	}
	rc, err := t.d.client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).Stream(ctx)
	if err != nil {
		err = logsError(t.rec.Spec.ID, pod, err)
		if errors.Is(err, drivers.ErrLogsUnavailable) {
			t.mu.Lock()
			t.rec.LogsError = err.Error()
			t.mu.Unlock()
		}
		return err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil {
		return fmt.Errorf("kubernetes: logs of task %q: %w", t.rec.Spec.ID, err)
	}
	path := t.d.store.outputPath(t.rec.Spec.ID)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// logsError explains a failed pod log request. Forbidden is the driver's
// role; anything else is the node's kubelet not serving logs, which is
// always so on nodes simulated by kwok (they run no containers).
func logsError(id string, pod *corev1.Pod, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("kubernetes: logs of task %q: %w; grant the driver's account \"get\" on pods/log in namespace %s", id, err, pod.Namespace)
	}
	return fmt.Errorf("%w: task %q: the kubelet of node %q did not serve the logs of pod %s/%s (%v); nodes simulated by kwok run no containers and keep no logs",
		drivers.ErrLogsUnavailable, id, pod.Spec.NodeName, pod.Namespace, pod.Name, err)
}

// Logs returns the task's output from opts.Offset: from the saved copy once
// the task is final, else streamed from its pod (following with opts.Follow).
func (d *Driver) Logs(ctx context.Context, id string, opts drivers.LogOptions) (io.ReadCloser, error) {
	t, err := d.get(id)
	if err != nil {
		return nil, err
	}
	if opts.Offset < 0 {
		return nil, fmt.Errorf("%w: log offset %d is negative; use 0 or more", drivers.ErrInvalidSpec, opts.Offset)
	}
	if st := t.status(); st.State.Final() {
		return d.savedLogs(t, opts.Offset)
	}
	pod, err := t.pod(ctx)
	if err != nil {
		return nil, err
	}
	for opts.Follow && (pod == nil || pod.Status.Phase == corev1.PodPending) {
		st, err := d.Status(ctx, id)
		if err != nil {
			return nil, err
		}
		if st.State.Final() {
			return d.savedLogs(t, opts.Offset)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d.cfg.PollInterval.D()):
		}
		if pod, err = t.pod(ctx); err != nil {
			return nil, err
		}
	}
	if pod == nil || pod.Status.Phase == corev1.PodPending {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	rc, err := d.client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Follow: opts.Follow}).Stream(ctx)
	if err != nil {
		return nil, logsError(id, pod, err)
	}
	if _, err := io.CopyN(io.Discard, rc, opts.Offset); err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, fmt.Errorf("kubernetes: skip to offset %d of task %q's logs: %w", opts.Offset, id, err)
	}
	return rc, nil
}

func (d *Driver) savedLogs(t *task, offset int64) (io.ReadCloser, error) {
	id := t.rec.Spec.ID
	f, err := os.Open(d.store.outputPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		t.mu.Lock()
		why := t.rec.LogsError
		t.mu.Unlock()
		if why != "" {
			return nil, fmt.Errorf("%w%s", drivers.ErrLogsUnavailable, strings.TrimPrefix(why, drivers.ErrLogsUnavailable.Error()))
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved logs of task %q: %w", id, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("read saved logs of task %q: %w", id, err)
	}
	return f, nil
}
