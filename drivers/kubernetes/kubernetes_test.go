package kubernetes

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/drivertest"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

func node(name string, cpu, mem string, gpus int64, ready, unschedulable bool) *corev1.Node {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	if gpus > 0 {
		alloc["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"nvidia.com/gpu.product": "A100"}},
		Spec:       corev1.NodeSpec{Unschedulable: unschedulable},
		Status: corev1.NodeStatus{
			Allocatable: alloc,
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
		},
	}
}

func pod(ns, name, nodeName string, phase corev1.PodPhase, labels map[string]string, cpu, mem string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, CreationTimestamp: metav1.Now()},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
		}}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

// newFake returns a driver on a fake clientset holding one Ready node with
// 4 CPUs and 8 GiB, plus objs.
func newFake(t *testing.T, dir string, objs ...runtime.Object) (*Driver, *fake.Clientset) {
	t.Helper()
	objs = append([]runtime.Object{node("n1", "4", "8Gi", 0, true, false)}, objs...)
	client := fake.NewClientset(objs...)
	return newOnClient(t, dir, client), client
}

func newOnClient(t *testing.T, dir string, client *fake.Clientset) *Driver {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	d, err := NewWithClient(Config{StateDir: dir, Namespace: "pcm", PollInterval: drivers.Duration(5 * time.Millisecond)}, client, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func getJob(t *testing.T, client *fake.Clientset, ns, name string) *batchv1.Job {
	t.Helper()
	job, err := client.BatchV1().Jobs(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get job %s/%s: %v", ns, name, err)
	}
	return job
}

func TestJobName(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"task-1", "pcm-task-1-0a1b2c"},
		{"abc", "pcm-abc-0a1b2c"},
	} {
		if got := jobName("0a1b2c", tc.id); got != tc.want {
			t.Errorf("jobName(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
	seen := map[string]string{}
	for _, id := range []string{"Task_1", "task.1", "task-1", strings.Repeat("x", 128), strings.Repeat("x", 127) + "y", "-a-", "A"} {
		name := jobName("0a1b2c", id)
		if !dnsLabel.MatchString(name) {
			t.Errorf("jobName(%q) = %q is not a DNS label", id, name)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("ids %q and %q both map to %q", prev, id, name)
		}
		seen[name] = id
	}
}

func TestStartCreatesJob(t *testing.T) {
	d, client := newFake(t, "")
	tests := []struct {
		name    string
		spec    drivers.TaskSpec
		ns      string
		image   string
		command []string
	}{
		{"command", drivers.TaskSpec{ID: "cmd", Command: []string{"echo", "hi"}, Resources: drivers.Resources{CPUs: 0.5, MemoryMB: 256},
			Env: map[string]string{"B": "2", "A": "1"}, Timeout: 90 * time.Second}, "pcm", "busybox:1.36", []string{"echo", "hi"}},
		{"script", drivers.TaskSpec{ID: "script", Script: "echo $A", Resources: drivers.Resources{CPUs: 0.5, MemoryMB: 256}},
			"pcm", "busybox:1.36", []string{"/bin/sh", "-c", "echo $A"}},
		{"image in other namespace", drivers.TaskSpec{ID: "img", Image: "python:3.13", Resources: drivers.Resources{CPUs: 0.5, MemoryMB: 256},
			Options: map[string]string{"namespace": "other"}}, "other", "python:3.13", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := d.Start(t.Context(), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if st.State != drivers.StatePending || st.NativeID != tc.ns+"/"+d.jobName(tc.spec.ID) {
				t.Errorf("Start = %+v", st)
			}
			job := getJob(t, client, tc.ns, d.jobName(tc.spec.ID))
			if job.Labels[LabelManagedBy] != "pcm" || job.Labels[LabelTask] != d.jobName(tc.spec.ID) || job.Annotations[AnnotationTask] != tc.spec.ID {
				t.Errorf("job labels %v annotations %v", job.Labels, job.Annotations)
			}
			if job.Spec.Template.Labels[LabelTask] != d.jobName(tc.spec.ID) {
				t.Errorf("pod template labels %v", job.Spec.Template.Labels)
			}
			if *job.Spec.BackoffLimit != 0 || job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("backoff %d restart %s; want 0 and Never", *job.Spec.BackoffLimit, job.Spec.Template.Spec.RestartPolicy)
			}
			c := job.Spec.Template.Spec.Containers[0]
			if c.Image != tc.image || strings.Join(c.Command, "|") != strings.Join(tc.command, "|") {
				t.Errorf("container image %q command %q; want %q %q", c.Image, c.Command, tc.image, tc.command)
			}
			for _, l := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
				if l.Cpu().String() != "500m" || l.Memory().String() != "256Mi" {
					t.Errorf("resources cpu %s memory %s; want 500m 256Mi", l.Cpu(), l.Memory())
				}
			}
			if _, err := os.Stat(filepath.Join(d.store.taskDir(tc.spec.ID), "task.json")); err != nil {
				t.Errorf("no record: %v", err)
			}
		})
	}
	job := getJob(t, client, "pcm", d.jobName("cmd"))
	env := job.Spec.Template.Spec.Containers[0].Env
	if len(env) != 2 || env[0] != (corev1.EnvVar{Name: "A", Value: "1"}) || env[1] != (corev1.EnvVar{Name: "B", Value: "2"}) {
		t.Errorf("env = %+v, want A=1 B=2", env)
	}
	if ads := job.Spec.ActiveDeadlineSeconds; ads == nil || *ads != 90 {
		t.Errorf("activeDeadlineSeconds = %v, want 90", ads)
	}
	if _, err := d.Start(t.Context(), drivers.TaskSpec{ID: "cmd", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 0.1}}); !errors.Is(err, drivers.ErrExists) {
		t.Errorf("duplicate id: %v, want ErrExists", err)
	}
}

func TestJobStatusMapping(t *testing.T) {
	cond := func(typ batchv1.JobConditionType, reason string) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: "msg"}}
	}
	terminated := func(code int32, reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}},
		}}}}
	}
	waiting := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}},
	}}}}
	unschedulable := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes available"}}}}
	for _, tc := range []struct {
		name  string
		conds []batchv1.JobCondition
		pod   *corev1.Pod
		stop  bool
		state drivers.State
		code  int
		msg   string
	}{
		{"no pod yet", nil, nil, false, drivers.StatePending, 0, "job controller"},
		{"image pull", nil, waiting, false, drivers.StatePending, 0, "ImagePullBackOff"},
		{"unschedulable", nil, unschedulable, false, drivers.StatePending, 0, "0/1 nodes"},
		{"running", nil, &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, false, drivers.StateRunning, 0, ""},
		{"pod done, job not yet", nil, terminated(0, "Completed"), false, drivers.StateRunning, 0, ""},
		{"complete", cond(batchv1.JobComplete, ""), terminated(0, "Completed"), false, drivers.StateSucceeded, 0, ""},
		{"failed exit 3", cond(batchv1.JobFailed, "BackoffLimitExceeded"), terminated(3, "Error"), false, drivers.StateFailed, 3, "exit code 3"},
		{"deadline", cond(batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded), nil, false, drivers.StateFailed, 1, "timeout"},
		{"oom", cond(batchv1.JobFailed, "BackoffLimitExceeded"), terminated(137, "OOMKilled"), false, drivers.StateFailed, 137, "out of memory"},
		{"failed after stop", cond(batchv1.JobFailed, "BackoffLimitExceeded"), terminated(143, "Error"), true, drivers.StateCancelled, 143, "stopped"},
		{"suspended", cond(batchv1.JobSuspended, ""), nil, false, drivers.StatePending, 0, "suspended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := jobStatus(&batchv1.Job{Status: batchv1.JobStatus{Conditions: tc.conds}}, tc.pod, tc.stop)
			if st.State != tc.state || st.ExitCode != tc.code && st.State.Final() || !strings.Contains(st.Message, tc.msg) {
				t.Errorf("jobStatus = %s exit %d %q; want %s exit %d containing %q", st.State, st.ExitCode, st.Message, tc.state, tc.code, tc.msg)
			}
		})
	}
}

// TestLifecycleThroughAPI drives a task through the fake API server the way
// the job controller and kubelet would, and checks states, events and logs.
func TestLifecycleThroughAPI(t *testing.T) {
	d, client := newFake(t, "")
	var mu sync.Mutex
	var events []drivers.State
	d.Observe(func(ev drivers.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, ev.State)
	})
	ctx := t.Context()
	if _, err := d.Start(ctx, drivers.TaskSpec{ID: "life", Command: []string{"echo", "hi"}, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{LabelManagedBy: "pcm", LabelTask: d.jobName("life"), LabelInstance: d.instance}
	p := pod("pcm", "pcm-life-abcde", "n1", corev1.PodRunning, labels, "1", "64Mi")
	if _, err := client.CoreV1().Pods("pcm").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Status(ctx, "life"); err != nil || st.State != drivers.StateRunning {
		t.Fatalf("status with a running pod: %+v %v", st, err)
	}
	p.Status.Phase = corev1.PodSucceeded
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}
	if _, err := client.CoreV1().Pods("pcm").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := getJob(t, client, "pcm", d.jobName("life"))
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	if _, err := client.BatchV1().Jobs("pcm").UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := d.Wait(ctx, "life")
	if err != nil || st.State != drivers.StateSucceeded {
		t.Fatalf("wait: %+v %v", st, err)
	}
	// Logs are saved at the end, so they outlive the pod.
	if err := client.CoreV1().Pods("pcm").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := d.Logs(ctx, "life", drivers.LogOptions{Offset: 5})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "logs" { // client-go's fake serves "fake logs"
		t.Errorf("logs from offset 5 = %q, want %q", b, "logs")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []drivers.State{drivers.StatePending, drivers.StateRunning, drivers.StateSucceeded}; strings.Join(stateStrings(events), ",") != strings.Join(stateStrings(want), ",") {
		t.Errorf("events %v, want %v", events, want)
	}
}

func stateStrings(s []drivers.State) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

func TestFingerprintMath(t *testing.T) {
	init := pod("x", "init", "n1", corev1.PodRunning, nil, "100m", "100Mi")
	init.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}}
	client := fake.NewClientset(
		node("n1", "4", "8Gi", 2, true, false),
		node("cordoned", "16", "64Gi", 8, true, true),
		node("notready", "16", "64Gi", 8, false, false),
		node("n2", "2", "4Gi", 0, true, false),
		pod("x", "other", "n1", corev1.PodRunning, nil, "1", "1Gi"),        // counted
		pod("x", "pending", "n2", corev1.PodPending, nil, "250m", "512Mi"), // counted: bound to n2
		init, // counts as 500m (largest init container), 100Mi
		pod("x", "done", "n1", corev1.PodSucceeded, nil, "2", "2Gi"), // terminated: free
		pod("x", "unbound", "", corev1.PodPending, nil, "2", "2Gi"),  // not on a node yet
		pod("x", "on-cordoned", "cordoned", corev1.PodRunning, nil, "2", "2Gi"),
	)
	d := newOnClient(t, "", client)
	own := map[string]string{LabelManagedBy: "pcm", LabelInstance: d.instance}
	if _, err := client.CoreV1().Pods("pcm").Create(t.Context(), pod("pcm", "ours", "n1", corev1.PodRunning, own, "1", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err) // accounted as a task instead
	}
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// CPUs: 4+2 - 1 - 0.25 - 0.5 = 4.25; memory: 12288 - 1024 - 512 - 100 = 10652 MB.
	want := drivers.Resources{CPUs: 4.25, MemoryMB: 10652, GPUs: 2, GPUModel: "A100"}
	if fp.Total != want || fp.Free != want {
		t.Errorf("fingerprint total %+v free %+v, want both %+v", fp.Total, fp.Free, want)
	}
	if fp.Attributes["kubernetes.nodes"] != "2" {
		t.Errorf("attributes %v", fp.Attributes)
	}
	// n1 has room for 4 - 1 - 0.5 = 2.5 CPUs, n2 for 2 - 0.25 = 1.75: the
	// sum admits 3 CPUs, no node does.
	_, err = d.Start(t.Context(), drivers.TaskSpec{ID: "wide", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 3, MemoryMB: 10}})
	if !errors.Is(err, drivers.ErrCapacity) || !strings.Contains(err.Error(), "no node can hold resources.cpus 3") ||
		!strings.Contains(err.Error(), "n1, has 2.5 CPUs") {
		t.Errorf("start wider than any node: %v", err)
	}
	if _, err := d.Start(t.Context(), drivers.TaskSpec{ID: "a", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 2.5, MemoryMB: 1000, GPUs: 1}}); err != nil {
		t.Fatal(err)
	}
	fp, err = d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fp.Free.CPUs != 1.75 || fp.Free.MemoryMB != 9652 || fp.Free.GPUs != 1 {
		t.Errorf("free after a task = %+v", fp.Free)
	}
	_, err = d.Start(t.Context(), drivers.TaskSpec{ID: "b", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 2, MemoryMB: 10}})
	if !errors.Is(err, drivers.ErrCapacity) || !strings.Contains(err.Error(), "resources.cpus 2 requested, 1.75 of 4.25 free") {
		t.Errorf("start beyond capacity: %v", err)
	}
	if _, err := client.BatchV1().Jobs("pcm").Get(t.Context(), d.jobName("b"), metav1.GetOptions{}); err == nil {
		t.Error("a refused task created a job")
	}
	// Pods of another pcm agent on the same cluster are used capacity.
	other := map[string]string{LabelManagedBy: "pcm", LabelInstance: "0000ff"}
	if _, err := client.CoreV1().Pods("pcm").Create(t.Context(), pod("pcm", "theirs", "n2", corev1.PodRunning, other, "1", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if fp, err = d.Fingerprint(t.Context()); err != nil || fp.Total.CPUs != 3.25 {
		t.Errorf("total with another agent's pod = %+v (%v), want 3.25 CPUs", fp.Total, err)
	}
}

func TestBadSpecs(t *testing.T) {
	d, client := newFake(t, "")
	ok := drivers.Resources{CPUs: 0.5, MemoryMB: 64}
	for _, tc := range []struct {
		name string
		spec drivers.TaskSpec
		want error
		text string
	}{
		{"negative cpus", drivers.TaskSpec{Resources: drivers.Resources{CPUs: -1}, Command: []string{"true"}}, drivers.ErrInvalidSpec, "resources.cpus"},
		{"nothing requested", drivers.TaskSpec{Command: []string{"true"}}, drivers.ErrInvalidSpec, "request some CPU or memory"},
		{"memory beyond capacity", drivers.TaskSpec{Resources: drivers.Resources{CPUs: 1, MemoryMB: 9000}, Command: []string{"true"}}, drivers.ErrCapacity, "resources.memory_mb 9000 requested"},
		{"missing command", drivers.TaskSpec{Resources: ok}, drivers.ErrInvalidSpec, "set exactly one of command, script or image"},
		{"unknown option", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Options: map[string]string{"partition": "x"}}, drivers.ErrInvalidSpec, `option "partition" is unknown`},
		{"bad namespace", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Options: map[string]string{"namespace": "Not_DNS"}}, drivers.ErrInvalidSpec, "options.namespace"},
		{"bad env", drivers.TaskSpec{Resources: ok, Command: []string{"true"}, Env: map[string]string{"1X": "y"}}, drivers.ErrInvalidSpec, "env name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.ID = "bad"
			_, err := d.Start(t.Context(), tc.spec)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Start: %v; want %v mentioning %q", err, tc.want, tc.text)
			}
			jobs, err := client.BatchV1().Jobs(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
			if err != nil || len(jobs.Items) != 0 {
				t.Errorf("a refused spec created jobs: %d %v", len(jobs.Items), err)
			}
			if _, err := d.Status(t.Context(), "bad"); !errors.Is(err, drivers.ErrNotFound) {
				t.Errorf("a refused spec was recorded: %v", err)
			}
		})
	}
}

func TestStopDeletesWithPropagation(t *testing.T) {
	d, client := newFake(t, "")
	ctx := t.Context()
	if _, err := d.Start(ctx, drivers.TaskSpec{ID: "s", Command: []string{"sleep", "600"}, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}}); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if err := d.Stop(ctx, "s", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	var del k8stesting.DeleteActionImpl
	found := false
	for _, a := range client.Actions() {
		if a.GetVerb() == "delete" && a.GetResource().Resource == "jobs" {
			del, found = a.(k8stesting.DeleteActionImpl), true
		}
	}
	if !found {
		t.Fatalf("no job delete among %v", client.Actions())
	}
	opts := del.GetDeleteOptions()
	if del.GetName() != d.jobName("s") || opts.PropagationPolicy == nil || *opts.PropagationPolicy != metav1.DeletePropagationForeground ||
		opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 3 {
		t.Errorf("delete %s with %+v; want pcm-s, Foreground, grace 3", del.GetName(), opts)
	}
	st, err := d.Status(ctx, "s")
	if err != nil || st.State != drivers.StateCancelled {
		t.Errorf("after Stop: %+v %v, want cancelled", st, err)
	}
	if err := d.Stop(ctx, "s", time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	fp, err := d.Fingerprint(ctx)
	if err != nil || fp.Free != fp.Total {
		t.Errorf("capacity not released after Stop: %+v %v", fp, err)
	}
}

func TestRecover(t *testing.T) {
	dir := t.TempDir()
	d1, client := newFake(t, dir)
	ctx := t.Context()
	for _, id := range []string{"done", "gone", "run"} {
		if _, err := d1.Start(ctx, drivers.TaskSpec{ID: id, Command: []string{"true"}, Resources: drivers.Resources{CPUs: 1, MemoryMB: 64}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Start(ctx, drivers.TaskSpec{ID: "late", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 1}}); !errors.Is(err, drivers.ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	// While no driver runs: "done" fails with exit 3, "gone" is deleted by
	// someone else, "run" starts running.
	job := getJob(t, client, "pcm", d1.jobName("done"))
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded"}}
	if _, err := client.BatchV1().Jobs("pcm").UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	failed := pod("pcm", "pcm-done-x", "n1", corev1.PodFailed, map[string]string{LabelTask: d1.jobName("done")}, "1", "64Mi")
	failed.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}}}
	running := pod("pcm", "pcm-run-x", "n1", corev1.PodRunning, map[string]string{LabelTask: d1.jobName("run"), LabelManagedBy: "pcm", LabelInstance: d1.instance}, "1", "64Mi")
	for _, p := range []*corev1.Pod{failed, running} {
		if _, err := client.CoreV1().Pods("pcm").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.BatchV1().Jobs("pcm").Delete(ctx, d1.jobName("gone"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	d2 := newOnClient(t, dir, client)
	sts, err := d2.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]drivers.Status{}
	for _, st := range sts {
		got[st.ID] = st
	}
	if len(sts) != 3 || got["done"].State != drivers.StateFailed || got["done"].ExitCode != 3 ||
		got["gone"].State != drivers.StateLost || got["run"].State != drivers.StateRunning {
		t.Fatalf("Recover = %+v", sts)
	}
	fp, err := d2.Fingerprint(ctx)
	if err != nil || fp.Total.CPUs-fp.Free.CPUs != 1 {
		t.Errorf("recovered running task not accounted: %+v %v", fp, err)
	}
	if _, err := d2.Start(ctx, drivers.TaskSpec{ID: "run", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 1}}); !errors.Is(err, drivers.ErrExists) {
		t.Errorf("Start with a recovered id: %v, want ErrExists", err)
	}
}

func TestConfig(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		raw  string
		want string
	}{
		{"kubeconfig", `{"kubeconfig":"` + kubeconfig + `","namespace":"jobs","poll_interval":"1s","max_cpus":2}`, ""},
		{"unknown key", `{"kubeconfig":"` + kubeconfig + `","namespaces":"x"}`, "unknown field"},
		{"bad namespace", `{"kubeconfig":"` + kubeconfig + `","namespace":"Bad_NS"}`, "namespace"},
		{"missing kubeconfig file", `{"kubeconfig":"/nonexistent/kubeconfig"}`, "kubeconfig"},
		{"bad duration", `{"kubeconfig":"` + kubeconfig + `","poll_interval":"soon"}`, "duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := FromConfig([]byte(tc.raw), t.TempDir(), nil)
			if tc.want == "" {
				if err != nil || d.Name() != "kubernetes" {
					t.Fatalf("FromConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	d, err := FromConfig([]byte(`{"kubeconfig":"`+kubeconfig+`"}`), t.TempDir(), nil)
	if err != nil || d.(*Driver).cfg.Namespace != "ns" {
		t.Errorf("no namespace set: %v; want the context's namespace \"ns\"", err)
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		if _, err := FromConfig(nil, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "set kubeconfig") {
			t.Errorf("no kubeconfig outside a cluster: %v", err)
		}
	}
}

// TestConformance runs the shared suite against a real cluster named by
// $KUBECONFIG (namespace $PCM_K8S_NAMESPACE, else the context's); testnet/k8s-up.sh
// starts one. With PCM_REQUIRE_KUBERNETES=1 a missing cluster fails.
func TestConformance(t *testing.T) {
	c := requireCluster(t)
	drivertest.Run(t, drivertest.Harness{
		New: func(t *testing.T, dir string) drivers.Driver {
			// Caps below what the cluster has free keep Total steady while
			// other tests' pods come and go on the same cluster (go test
			// runs packages in parallel), and let the suite's "every CPU"
			// task fit on one node (a pod cannot span nodes).
			return c.driver(t, dir, func(cfg *Config) {
				cfg.MaxCPUs = math.Max(1, math.Floor(c.maxNodeCPUs)-1)
				cfg.MaxMemoryMB = 4096
			})
		},
		PrintExit: func(id, out string, code int) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `printf '%s\n' "$1"; exit "$2"`, "sh", out, strconv.Itoa(code)},
				Env: map[string]string{kwokExitCode: strconv.Itoa(code)}}
		},
		Sleep: func(id string) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"sleep", "900"}, Env: map[string]string{kwokRunFor: "900s"}}
		},
		TimeoutScale: 6, // image pulls and pod start take seconds
		Caps:         drivertest.Caps{Recover: true, Timeout: true, Stream: true, NoLogs: c.kwok},
	})
}

// Refusals by the API server become errors that say what to do.
func TestCreateErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "batch", Resource: "jobs"}
	for _, tc := range []struct {
		name string
		err  error
		want error
		msg  string
	}{
		{"quota", apierrors.NewForbidden(gr, "j", errors.New(`exceeded quota: q, requested: limits.cpu=1, used: limits.cpu=4, limited: limits.cpu=4`)), drivers.ErrCapacity, "quota of namespace pcm is used up"},
		{"rbac", apierrors.NewForbidden(gr, "j", errors.New(`User "system:serviceaccount:pcm:x" cannot create resource "jobs"`)), nil, `grant the driver's account "create" on jobs.batch`},
		{"namespace", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "pcm"), drivers.ErrInvalidSpec, "namespace pcm does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, client := newFake(t, "")
			client.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			_, err := d.Start(t.Context(), drivers.TaskSpec{ID: "refused", Command: []string{"true"}, Resources: drivers.Resources{CPUs: 0.5}})
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("start: %v; want %v containing %q", err, tc.want, tc.msg)
			}
			if _, err := d.Status(t.Context(), "refused"); !errors.Is(err, drivers.ErrNotFound) {
				t.Errorf("a refused task was recorded: %v", err)
			}
		})
	}
}

// A pod the scheduler has found no node for since longer than
// UnschedulableTimeout fails its task with the scheduler's reason, and the
// Job is deleted; a younger one stays pending.
func TestUnschedulableTimeout(t *testing.T) {
	d, client := newFake(t, "")
	d.cfg.UnschedulableTimeout = drivers.Duration(time.Minute)
	ctx := t.Context()
	for _, id := range []string{"young", "old"} {
		if _, err := d.Start(ctx, drivers.TaskSpec{ID: id, Command: []string{"true"}, Resources: drivers.Resources{CPUs: 0.5, MemoryMB: 64}}); err != nil {
			t.Fatal(err)
		}
		p := pod("pcm", d.jobName(id)+"-x", "", corev1.PodPending, map[string]string{LabelTask: d.jobName(id)}, "500m", "64Mi")
		since := time.Now().Add(-10 * time.Second)
		if id == "old" {
			since = time.Now().Add(-2 * time.Minute)
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/1 nodes are available: 1 Insufficient cpu.", LastTransitionTime: metav1.NewTime(since)}}
		if _, err := client.CoreV1().Pods("pcm").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := d.Status(ctx, "young"); err != nil || st.State != drivers.StatePending || !strings.Contains(st.Message, "Insufficient cpu") {
		t.Errorf("young unschedulable task: %+v %v, want pending with the reason", st, err)
	}
	st, err := d.Status(ctx, "old")
	if err != nil || st.State != drivers.StateFailed || !strings.Contains(st.Message, "unschedulable") || !strings.Contains(st.Message, "Insufficient cpu") {
		t.Errorf("old unschedulable task: %+v %v, want failed naming the reason", st, err)
	}
	if _, err := client.BatchV1().Jobs("pcm").Get(ctx, d.jobName("old"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("job of the failed unschedulable task: %v, want deleted", err)
	}
}
