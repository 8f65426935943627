package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pcm-mesh/pcm/drivers"
)

// Environment variables that kwok's pcm stage (testnet/k8s/kwok-pod-complete.yaml)
// reads to simulate a container: how long it runs and its exit code. A real
// kubelet ignores them and runs the command.
const (
	kwokRunFor   = "PCM_KWOK_RUN_FOR"
	kwokExitCode = "PCM_KWOK_EXIT_CODE"
)

// testCluster is the real cluster the tests in this file and TestConformance
// run against.
type testCluster struct {
	kubeconfig, namespace string
	// kwok: every usable node is simulated by kwok (no containers, no logs).
	kwok bool
	// maxNodeCPUs is the roomiest node's free CPUs (for this driver, when
	// the test started): one pod cannot span nodes, so the suite's "use
	// every CPU" task is capped to it.
	maxNodeCPUs float64
	nodes       []nodeRoom
}

// requireCluster skips (or fails, with PCM_REQUIRE_KUBERNETES=1) when
// $KUBECONFIG names no cluster, and reads the cluster's nodes. The
// namespace is $PCM_K8S_NAMESPACE, else the kubeconfig context's.
func requireCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{kubeconfig: os.Getenv("KUBECONFIG"), namespace: os.Getenv("PCM_K8S_NAMESPACE")}
	if c.kubeconfig == "" {
		if os.Getenv("PCM_REQUIRE_KUBERNETES") == "1" {
			t.Fatal("PCM_REQUIRE_KUBERNETES=1 but KUBECONFIG is not set; start a cluster with testnet/k8s-up.sh and source testnet/.data/k8s/env")
		}
		t.Skip("KUBECONFIG is not set: these tests need a real cluster (testnet/k8s-up.sh starts one; unit tests use client-go's fake clientset)")
	}
	d := c.driver(t, t.TempDir(), nil)
	nodes, err := d.client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list nodes of the cluster in %s: %v", c.kubeconfig, err)
	}
	c.kwok = true
	for _, n := range nodes.Items {
		if nodeReady(n) && !n.Spec.Unschedulable {
			c.kwok = c.kwok && n.Annotations["kwok.x-k8s.io/node"] == "fake"
		}
	}
	if _, c.nodes, err = d.cluster(t.Context()); err != nil || len(c.nodes) == 0 {
		t.Fatalf("cluster in %s has no usable node (%v)", c.kubeconfig, err)
	}
	for _, n := range c.nodes {
		c.maxNodeCPUs = max(c.maxNodeCPUs, n.resources().CPUs)
	}
	return c
}

// driver is a driver on the cluster with a state dir; edit may change its config.
func (c *testCluster) driver(t *testing.T, dir string, edit func(*Config)) *Driver {
	t.Helper()
	cfg := Config{StateDir: dir, Kubeconfig: c.kubeconfig, Namespace: c.namespace}
	if edit != nil {
		edit(&cfg)
	}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// waitFor polls cond until it holds or fails the test after d. It does not
// use t.Context, so it also works in t.Cleanup.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, d)
		}
		time.Sleep(100 * time.Millisecond) // poll interval; the deadline above bounds the wait
	}
}

// gone waits until the task's Job and pods are deleted from the cluster.
func gone(t *testing.T, d *Driver, id string, within time.Duration) {
	t.Helper()
	ns, name := d.cfg.Namespace, d.jobName(id)
	ctx := context.Background() // also called from t.Cleanup
	waitFor(t, within, "job "+name+" and its pods deleted", func() bool {
		_, err := d.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false
		}
		pods, err := d.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelTask + "=" + name})
		return err == nil && len(pods.Items) == 0
	})
}

// Stop deletes the Job with foreground propagation: the controller
// manager's garbage collector removes the pod, then the Job.
func TestClusterStopDeletesJobAndPods(t *testing.T) {
	c := requireCluster(t)
	d := c.driver(t, t.TempDir(), nil)
	spec := drivers.TaskSpec{ID: "stop-me", Command: []string{"sleep", "900"}, Env: map[string]string{kwokRunFor: "900s"},
		Resources: drivers.Resources{CPUs: 0.1, MemoryMB: 32}}
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "task running", func() bool {
		st, err := d.Status(t.Context(), spec.ID)
		return err == nil && st.State == drivers.StateRunning
	})
	pods, err := d.client.CoreV1().Pods(d.cfg.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelTask + "=" + d.jobName(spec.ID)})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Spec.NodeName == "" {
		t.Fatalf("running task's pods: %+v (%v), want one scheduled pod", pods, err)
	}
	if err := d.Stop(t.Context(), spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Status(t.Context(), spec.ID); err != nil || st.State != drivers.StateCancelled {
		t.Errorf("after Stop: %+v %v, want cancelled", st, err)
	}
	gone(t, d, spec.ID, time.Minute)
}

// A task wider than every node is refused at Start with the roomiest
// node's size, instead of a Job pending for ever.
func TestClusterTaskWiderThanAnyNode(t *testing.T) {
	c := requireCluster(t)
	d := c.driver(t, t.TempDir(), nil)
	fp, err := d.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wide := c.maxNodeCPUs + 1
	if wide > fp.Free.CPUs {
		t.Fatalf("cluster of %d nodes has %g CPUs free, the test needs more than one node's %g", len(c.nodes), fp.Free.CPUs, c.maxNodeCPUs)
	}
	_, err = d.Start(t.Context(), drivers.TaskSpec{ID: "wide", Command: []string{"true"}, Resources: drivers.Resources{CPUs: wide, MemoryMB: 32}})
	if !errors.Is(err, drivers.ErrCapacity) || !strings.Contains(err.Error(), "no node can hold") {
		t.Fatalf("start %g CPUs on nodes of at most %g: %v, want ErrCapacity naming the roomiest node", wide, c.maxNodeCPUs, err)
	}
	if _, err := d.client.BatchV1().Jobs(d.cfg.Namespace).Get(t.Context(), d.jobName("wide"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused task has a job: %v", err)
	}
}

// Pods that fit a node each but not together (fragmentation): the last
// one is never scheduled, and after UnschedulableTimeout its task fails
// with the scheduler's reason and its Job is deleted.
func TestClusterUnschedulableFails(t *testing.T) {
	c := requireCluster(t)
	d := c.driver(t, t.TempDir(), func(cfg *Config) { cfg.UnschedulableTimeout = drivers.Duration(3 * time.Second) })
	// Each filler takes more than half of the smallest node, so no two share
	// a node; one per node leaves less than a filler's size on every node.
	lo, hi := c.nodes[0].cpuMilli, c.nodes[0].cpuMilli
	for _, n := range c.nodes {
		lo, hi = min(lo, n.cpuMilli), max(hi, n.cpuMilli)
	}
	size := float64(lo*3/4/100) / 10
	if size*1000 <= float64(hi)/2 {
		t.Fatalf("nodes from %d to %d milli-CPUs: the test needs nodes of similar size", lo, hi)
	}
	run := func(id string) drivers.TaskSpec {
		return drivers.TaskSpec{ID: id, Command: []string{"sleep", "900"}, Env: map[string]string{kwokRunFor: "900s"},
			Resources: drivers.Resources{CPUs: size, MemoryMB: 32}}
	}
	for i := range c.nodes {
		id := fmt.Sprintf("filler-%d", i)
		if _, err := d.Start(t.Context(), run(id)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = d.Stop(context.Background(), id, 0)
			gone(t, d, id, time.Minute)
		})
	}
	for i := range c.nodes {
		id := fmt.Sprintf("filler-%d", i)
		waitFor(t, time.Minute, id+" running", func() bool {
			st, err := d.Status(t.Context(), id)
			return err == nil && st.State == drivers.StateRunning
		})
	}
	spec := run("no-room")
	if _, err := d.Start(t.Context(), spec); err != nil {
		t.Fatalf("start: %v (the driver's checks must pass: each node alone could hold it)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	st, err := d.Wait(ctx, spec.ID)
	if err != nil || st.State != drivers.StateFailed || !strings.Contains(st.Message, "unschedulable") || !strings.Contains(st.Message, "Insufficient cpu") {
		t.Fatalf("unschedulable task: %+v %v, want failed naming the scheduler's reason", st, err)
	}
	gone(t, d, spec.ID, time.Minute)
}

// BenchmarkClusterRoundTrip starts b.N tasks of 0.1 CPU on the real
// cluster (8 at a time) and waits for each to succeed: Job created,
// scheduled, run by the node (1 s under kwok), completed by the Job
// controller, seen by the driver. Reports tasks per second and the mean
// time from Start to succeeded.
//
//	bash testnet/k8s-up.sh && source testnet/.data/k8s/env
//	go test ./drivers/kubernetes -run '^$' -bench ClusterRoundTrip -benchtime 40x
func BenchmarkClusterRoundTrip(b *testing.B) {
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		b.Skip("KUBECONFIG is not set: start a cluster with testnet/k8s-up.sh")
	}
	d, err := New(Config{StateDir: b.TempDir(), Kubeconfig: kubeconfig, Namespace: os.Getenv("PCM_K8S_NAMESPACE")}, nil) // default poll_interval (500ms)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			id := fmt.Sprintf("bench-%d", i)
			t0 := time.Now()
			spec := drivers.TaskSpec{ID: id, Command: []string{"true"}, Resources: drivers.Resources{CPUs: 0.1, MemoryMB: 32}}
			if _, err := d.Start(b.Context(), spec); err != nil {
				b.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
			defer cancel()
			if st, err := d.Wait(ctx, id); err != nil || st.State != drivers.StateSucceeded {
				b.Errorf("task %s: %+v %v", id, st, err)
				return
			}
			mu.Lock()
			total += time.Since(t0)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/task-latency")
}
