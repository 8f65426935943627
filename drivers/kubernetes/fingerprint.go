package kubernetes

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pcm-mesh/pcm/drivers"
)

// Fingerprint reports Total = allocatable of Ready, schedulable nodes minus
// the requests of non-terminated pods this driver did not create (capped by
// the config), and Free = Total minus the driver's unfinished tasks.
func (d *Driver) Fingerprint(ctx context.Context) (drivers.Fingerprint, error) {
	fp, _, err := d.cluster(ctx)
	return fp, err
}

// cluster is Fingerprint plus the room each usable node has for this
// driver's pods (allocatable minus other pods' requests).
func (d *Driver) cluster(ctx context.Context) (drivers.Fingerprint, []nodeRoom, error) {
	if err := d.checkOpen(); err != nil {
		return drivers.Fingerprint{}, nil, err
	}
	nodes, err := d.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return drivers.Fingerprint{}, nil, fmt.Errorf("kubernetes: list nodes: %w", err)
	}
	pods, err := d.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: "status.phase!=Succeeded,status.phase!=Failed",
	})
	if err != nil {
		return drivers.Fingerprint{}, nil, fmt.Errorf("kubernetes: list pods: %w", err)
	}
	total, attrs, rooms := capacity(nodes.Items, pods.Items, d.cfg.GPUResource, d.instance)
	if d.cfg.MaxCPUs > 0 && total.CPUs > d.cfg.MaxCPUs {
		total.CPUs = d.cfg.MaxCPUs
	}
	if d.cfg.MaxMemoryMB > 0 && total.MemoryMB > d.cfg.MaxMemoryMB {
		total.MemoryMB = d.cfg.MaxMemoryMB
	}
	attrs["kubernetes.namespace"] = d.cfg.Namespace
	if err := d.refreshUnfinished(ctx); err != nil {
		return drivers.Fingerprint{}, nil, err
	}
	used := d.reserved()
	free := total
	free.CPUs = math.Max(0, math.Round((total.CPUs-used.CPUs)*1e6)/1e6)
	free.MemoryMB = max(0, total.MemoryMB-used.MemoryMB)
	free.GPUs = max(0, total.GPUs-used.GPUs)
	return drivers.Fingerprint{Driver: "kubernetes", Total: total, Free: free, Attributes: attrs, Kinds: kinds}, rooms, nil
}

// nodeRoom is what one node can give this driver's pods.
type nodeRoom struct {
	node                    string
	cpuMilli, memBytes, gpu int64
}

func (r nodeRoom) resources() drivers.Resources {
	return drivers.Resources{CPUs: math.Max(0, float64(r.cpuMilli)/1000), MemoryMB: max(0, r.memBytes/(1024*1024)), GPUs: int(max(0, r.gpu))}
}

// holds reports whether a pod asking for res fits in the room.
func (r nodeRoom) holds(res drivers.Resources) bool {
	return int64(math.Ceil(res.CPUs*1000)) <= r.cpuMilli && res.MemoryMB*1024*1024 <= r.memBytes && int64(res.GPUs) <= r.gpu
}

// capacity is the fingerprint math: allocatable of usable nodes minus the
// requests of non-terminated pods on them, except this driver instance's
// own pods (other pcm agents' pods on the same cluster count as used). It
// also returns each usable node's room, sorted by name.
func capacity(nodes []corev1.Node, pods []corev1.Pod, gpuResource, instance string) (drivers.Resources, map[string]string, []nodeRoom) {
	rooms := map[string]*nodeRoom{}
	models := map[string]bool{}
	for _, n := range nodes {
		if n.Spec.Unschedulable || !nodeReady(n) {
			continue
		}
		room := &nodeRoom{node: n.Name, cpuMilli: n.Status.Allocatable.Cpu().MilliValue(), memBytes: n.Status.Allocatable.Memory().Value()}
		if q, ok := n.Status.Allocatable[corev1.ResourceName(gpuResource)]; ok {
			room.gpu = q.Value()
			if m := n.Labels["nvidia.com/gpu.product"]; m != "" && q.Value() > 0 {
				models[m] = true
			}
		}
		rooms[n.Name] = room
	}
	for _, p := range pods {
		room := rooms[p.Spec.NodeName]
		if room == nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed ||
			p.Labels[LabelManagedBy] == ManagedByValue && p.Labels[LabelInstance] == instance {
			continue
		}
		req := podRequests(p)
		room.cpuMilli -= req.Cpu().MilliValue()
		room.memBytes -= req.Memory().Value()
		if q, ok := req[corev1.ResourceName(gpuResource)]; ok {
			room.gpu -= q.Value()
		}
	}
	var cpuMilli, memBytes, gpus int64
	list := make([]nodeRoom, 0, len(rooms))
	for _, room := range rooms {
		cpuMilli += max(0, room.cpuMilli)
		memBytes += max(0, room.memBytes)
		gpus += max(0, room.gpu)
		list = append(list, *room)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].node < list[j].node })
	r := drivers.Resources{
		CPUs:     float64(cpuMilli) / 1000,
		MemoryMB: memBytes / (1024 * 1024),
		GPUs:     int(gpus),
	}
	names := make([]string, 0, len(models))
	for m := range models {
		names = append(names, m)
	}
	sort.Strings(names)
	if len(names) > 0 {
		r.GPUModel = names[0]
	}
	attrs := map[string]string{"kubernetes.nodes": fmt.Sprint(len(list))}
	if len(names) > 0 {
		attrs["kubernetes.gpu_models"] = strings.Join(names, ",")
	}
	return r, attrs, list
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podRequests is what the scheduler reserves for a pod: the sum of its
// containers' requests, at least the largest init container's, plus overhead.
func podRequests(p corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	add := func(l corev1.ResourceList) {
		for name, q := range l {
			cur := out[name]
			cur.Add(q)
			out[name] = cur
		}
	}
	for _, c := range p.Spec.Containers {
		add(c.Resources.Requests)
	}
	for _, c := range p.Spec.InitContainers {
		for name, q := range c.Resources.Requests {
			if cur := out[name]; q.Cmp(cur) > 0 {
				out[name] = q.DeepCopy()
			}
		}
	}
	add(p.Spec.Overhead)
	return out
}

// reserved sums the resources of the driver's unfinished tasks.
func (d *Driver) reserved() drivers.Resources {
	d.mu.Lock()
	defer d.mu.Unlock()
	var r drivers.Resources
	for _, t := range d.tasks {
		if !t.status().State.Final() {
			res := t.resources()
			r.CPUs += res.CPUs
			r.MemoryMB += res.MemoryMB
			r.GPUs += res.GPUs
		}
	}
	return r
}

// refreshUnfinished asks the API server about every unfinished task not
// read within the last poll interval (Wait reads them that often), so
// capacity held by tasks that ended is released.
func (d *Driver) refreshUnfinished(ctx context.Context) error {
	d.mu.Lock()
	var ts []*task
	for _, t := range d.tasks {
		if !t.status().State.Final() && !t.fresh(d.cfg.PollInterval.D()) {
			ts = append(ts, t)
		}
	}
	d.mu.Unlock()
	for _, t := range ts {
		if err := t.refresh(ctx); err != nil {
			return err
		}
	}
	return nil
}

// quantities converts resources to Kubernetes requests (also used as limits).
func quantities(r drivers.Resources, gpuResource string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if r.CPUs > 0 {
		l[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Ceil(r.CPUs*1000)), resource.DecimalSI)
	}
	if r.MemoryMB > 0 {
		l[corev1.ResourceMemory] = *resource.NewQuantity(r.MemoryMB*1024*1024, resource.BinarySI)
	}
	if r.GPUs > 0 {
		l[corev1.ResourceName(gpuResource)] = *resource.NewQuantity(int64(r.GPUs), resource.DecimalSI)
	}
	return l
}
