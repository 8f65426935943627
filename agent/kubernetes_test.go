package agent_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/kubernetes"
	"github.com/pcm-mesh/pcm/testnet"
)

// kubeMesh starts two agents: 0 brokers with a local driver, 1 provides a
// real Kubernetes cluster ($KUBECONFIG, e.g. from testnet/k8s-up.sh) with
// the kubernetes driver only. It skips without a cluster, or fails with
// PCM_REQUIRE_KUBERNETES=1.
func kubeMesh(t *testing.T) (*testnet.Mesh, k8s.Interface, string) {
	t.Helper()
	kubeconfig, ns := os.Getenv("KUBECONFIG"), os.Getenv("PCM_K8S_NAMESPACE")
	if kubeconfig == "" {
		if os.Getenv("PCM_REQUIRE_KUBERNETES") == "1" {
			t.Fatal("PCM_REQUIRE_KUBERNETES=1 but KUBECONFIG is not set; start a cluster with testnet/k8s-up.sh and source testnet/.data/k8s/env")
		}
		t.Skip("KUBECONFIG is not set: this test needs a real Kubernetes cluster (testnet/k8s-up.sh starts one)")
	}
	if ns == "" { // the driver's default too
		var err error
		ns, _, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, nil).Namespace()
		if err != nil {
			t.Fatalf("kubeconfig %s: %v", kubeconfig, err)
		}
	}
	cfg := kubernetes.Config{Kubeconfig: kubeconfig, Namespace: ns, PollInterval: drivers.Duration(200 * time.Millisecond)}
	rc, err := cfg.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := k8s.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	m := testnet.Start(t, testnet.Options{N: 2,
		Drivers: func(i int, dir string) ([]drivers.Driver, error) {
			if i == 0 {
				return testnet.DefaultDrivers(i, dir)
			}
			c := cfg
			c.StateDir = dir + "/kubernetes"
			d, err := kubernetes.New(c, nil)
			if err != nil {
				return nil, err
			}
			return []drivers.Driver{d}, nil
		},
		Configure: func(i int, c *agent.Config) {
			if i == 1 {
				c.Region = "k8s"
			}
		}})
	m.WaitForMesh(30 * time.Second)
	return m, client, ns
}

func kubeTask(name, cpu string, env map[string]string) []byte {
	b := fmt.Appendf(nil, "name: %s\nresources:\n  cpu: %s\n  memory: 64Mi\ndriver: kubernetes\nconstraints: ['provider.attrs.region == \"k8s\"']\ncommand: [\"sh\", \"-c\", \"echo hello from a kubernetes job\"]\n", name, cpu)
	if len(env) > 0 {
		b = append(b, "env:\n"...)
		for k, v := range env {
			b = fmt.Appendf(b, "  %s: %q\n", k, v)
		}
	}
	return b
}

// pcmJobs lists the Jobs and pods the kubernetes driver made for a task
// (its annotation holds the driver's task id, which contains the mesh id).
func pcmJobs(t *testing.T, client k8s.Interface, ns, taskID string) (jobs, pods int) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=" + kubernetes.ManagedByValue}
	jl, err := client.BatchV1().Jobs(ns).List(t.Context(), sel)
	if err != nil {
		t.Fatalf("list jobs: %v", err)
	}
	names := map[string]bool{}
	for _, j := range jl.Items {
		if strings.Contains(j.Annotations[kubernetes.AnnotationTask], taskID) {
			jobs++
			names[j.Name] = true
		}
	}
	pl, err := client.CoreV1().Pods(ns).List(t.Context(), sel)
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	for _, p := range pl.Items {
		if strings.Contains(p.Annotations[kubernetes.AnnotationTask], taskID) {
			pods++
		}
	}
	return jobs, pods
}

// A mesh task placed on an agent with the kubernetes driver runs as a Job
// on the real API server (scheduled onto a kwok node), ends succeeded with
// its ledger entries; a cancelled one has its Job and pods deleted.
func TestKubernetesTaskThroughMesh(t *testing.T) {
	m, client, ns := kubeMesh(t)
	broker := m.Nodes[0].Agent()
	provider := m.Nodes[1].Agent().ID()

	tk, err := broker.Submit(kubeTask("k8s-hello", "100m", nil), "k8s-hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	done := waitState(t, m, broker, tk.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed, agent.StateCancelled)
	if done.State != agent.StateSucceeded || done.Provider != provider {
		t.Fatalf("task ended %s on %s: %s (%+v)", done.State, done.Provider, done.Message, done.History)
	}
	if jobs, _ := pcmJobs(t, client, ns, tk.ID); jobs != 1 {
		t.Errorf("%d jobs on the API server for task %s, want 1", jobs, tk.ID)
	}
	kinds := ledgerKinds(t, broker, tk.ID)
	if kinds[consensus.TypeAgreement] != 1 || kinds[settled] != 1 || kinds[consensus.TypeTaskEvent] != 2 {
		t.Errorf("ledger records for the task: %v, want 1 agreement, 2 task events, settled once", kinds)
	}

	// Cancel: a Job that would run for 15 minutes.
	long, err := broker.Submit(kubeTask("k8s-long", "100m", map[string]string{"PCM_KWOK_RUN_FOR": "900s"}), "k8s-long.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, broker, long.ID, 2*time.Minute, agent.StateRunning)
	testnet.WaitFor(t, time.Minute, "the long task's pod on the API server", func() bool {
		_, pods := pcmJobs(t, client, ns, long.ID)
		return pods == 1
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := broker.CancelTask(ctx, long.ID, broker.ID()); err != nil {
		t.Fatal(err)
	}
	end := waitState(t, m, broker, long.ID, time.Minute, agent.StateCancelled, agent.StateSucceeded, agent.StateFailed)
	if end.State != agent.StateCancelled {
		t.Fatalf("cancelled task ended %s: %s", end.State, end.Message)
	}
	testnet.WaitFor(t, time.Minute, "the cancelled task's Job and pods deleted", func() bool {
		jobs, pods := pcmJobs(t, client, ns, long.ID)
		return jobs == 0 && pods == 0
	})
}

// A task wider than any node ends with a clear reason, not a Job pending
// for ever; a provider restarted while its Job runs re-attaches to it.
func TestKubernetesTooBigAndRestart(t *testing.T) {
	m, client, ns := kubeMesh(t)
	broker := m.Nodes[0].Agent()

	// More CPUs than the largest node, fewer than the cluster's sum (the
	// advert), so only the driver can tell it never fits.
	nodes, err := client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var widest int64
	for _, n := range nodes.Items {
		widest = max(widest, n.Status.Allocatable.Cpu().MilliValue())
	}
	cpus := fmt.Sprintf("%dm", widest+1000)
	big, err := broker.Submit(append(kubeTask("k8s-big", cpus, nil), "deadline: 60s\n"...), "k8s-big.yaml")
	if err != nil {
		t.Fatal(err)
	}
	end := waitState(t, m, broker, big.ID, 2*time.Minute, agent.StateFailed, agent.StateExpired, agent.StateSucceeded, agent.StateCancelled)
	if end.State == agent.StateSucceeded || end.State == agent.StateCancelled {
		t.Fatalf("a task of %s CPUs on nodes of at most %dm ended %s: %s", cpus, widest, end.State, end.Message)
	}
	t.Logf("task of %s CPUs: %s: %s (%+v)", cpus, end.State, end.Message, end.History)
	if jobs, _ := pcmJobs(t, client, ns, big.ID); jobs != 0 {
		t.Errorf("a task too big for any node left %d jobs", jobs)
	}

	tk, err := broker.Submit(kubeTask("k8s-restart", "100m", map[string]string{"PCM_KWOK_RUN_FOR": "10s"}), "k8s-restart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, broker, tk.ID, 2*time.Minute, agent.StateRunning)
	m.Restart(1)
	done := waitState(t, m, broker, tk.ID, 2*time.Minute, agent.StateSucceeded, agent.StateFailed, agent.StateCancelled, agent.StateLost)
	if done.State != agent.StateSucceeded {
		t.Fatalf("task across a provider restart ended %s: %s (%+v)", done.State, done.Message, done.History)
	}
	if jobs, _ := pcmJobs(t, client, ns, tk.ID); jobs != 1 {
		t.Errorf("%d jobs for the task across a restart, want 1 (re-attached, not re-run)", jobs)
	}
}
