package slurm

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// node is one Slurm node as the driver sees it.
type node struct {
	name       string
	cpus       int
	memoryMB   int64
	gpus       int
	gpuModel   string
	state      string
	partitions []string
}

type partition struct {
	name  string
	nodes []string
	def   bool
	up    bool
}

// clusterInfo is a snapshot of the cluster's partitions and nodes.
type clusterInfo struct {
	partitions map[string]partition
	nodes      map[string]node
	version    string
	fetched    time.Time
}

// clusterInfo returns the cached snapshot, refreshing it after InfoTTL.
func (d *Driver) clusterInfo(ctx context.Context, force bool) (*clusterInfo, error) {
	d.mu.Lock()
	info := d.info
	d.mu.Unlock()
	if !force && info != nil && time.Since(info.fetched) < d.cfg.InfoTTL {
		return info, nil
	}
	parts, err := d.cli.run(ctx, "scontrol", "show", "partition", "--oneliner")
	if err != nil {
		return nil, fmt.Errorf("slurm: read partitions (is slurmctld reachable? try `scontrol ping`): %w", err)
	}
	nodes, err := d.cli.run(ctx, "scontrol", "show", "node", "--oneliner")
	if err != nil {
		return nil, fmt.Errorf("slurm: read nodes: %w", err)
	}
	info = parseClusterInfo(parts, nodes)
	info.fetched = time.Now()
	d.mu.Lock()
	d.info = info
	d.mu.Unlock()
	return info, nil
}

// parseClusterInfo reads `scontrol show partition|node --oneliner` output.
func parseClusterInfo(partText, nodeText string) *clusterInfo {
	info := &clusterInfo{partitions: map[string]partition{}, nodes: map[string]node{}}
	for _, kv := range parseOneliners(nodeText) {
		n := node{name: kv["NodeName"], state: kv["State"]}
		n.cpus, _ = strconv.Atoi(kv["CPUTot"])
		n.memoryMB, _ = strconv.ParseInt(kv["RealMemory"], 10, 64)
		n.gpus, n.gpuModel = gres(kv["Gres"])
		if p := kv["Partitions"]; p != "" {
			n.partitions = strings.Split(p, ",")
		}
		if info.version == "" {
			info.version = kv["Version"]
		}
		info.nodes[n.name] = n
	}
	for _, kv := range parseOneliners(partText) {
		p := partition{name: kv["PartitionName"], def: kv["Default"] == "YES", up: kv["State"] == "UP"}
		for _, n := range info.nodes {
			for _, np := range n.partitions {
				if np == p.name {
					p.nodes = append(p.nodes, n.name)
				}
			}
		}
		sort.Strings(p.nodes)
		info.partitions[p.name] = p
	}
	return info
}

// defaultPartition is name, or Slurm's default partition when name is empty.
func (c *clusterInfo) defaultPartition(name string) string {
	if name != "" {
		return name
	}
	for _, p := range c.partitions {
		if p.def {
			return p.name
		}
	}
	return ""
}

func (c *clusterInfo) partitionNames() []string {
	names := make([]string, 0, len(c.partitions))
	for n := range c.partitions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// nodesOf lists a partition's nodes; with no partition name, every node.
func (c *clusterInfo) nodesOf(partition string) []node {
	var out []node
	if partition == "" {
		for _, n := range c.nodes {
			out = append(out, n)
		}
		return out
	}
	for _, name := range c.partitions[partition].nodes {
		out = append(out, c.nodes[name])
	}
	return out
}

// fits checks that the partition exists and one of its nodes can hold r
// (tasks run on one node).
func (c *clusterInfo) fits(partition string, r drivers.Resources) error {
	name := c.defaultPartition(partition)
	if partition != "" {
		if _, ok := c.partitions[partition]; !ok {
			return invalid("options.partition %q is unknown; known: %s", partition, strings.Join(c.partitionNames(), ", "))
		}
	}
	cpus := math.Ceil(r.CPUs)
	var maxCPU, maxGPU int
	var maxMem int64
	for _, n := range c.nodesOf(name) {
		if float64(n.cpus) >= cpus && n.memoryMB >= r.MemoryMB && n.gpus >= r.GPUs {
			return nil
		}
		maxCPU, maxMem, maxGPU = max(maxCPU, n.cpus), max(maxMem, n.memoryMB), max(maxGPU, n.gpus)
	}
	return fmt.Errorf("%w: no node of partition %q has %v CPUs, %d MB memory and %d GPUs (largest: %d CPUs, %d MB, %d GPUs); ask for less",
		drivers.ErrCapacity, name, r.CPUs, r.MemoryMB, r.GPUs, maxCPU, maxMem, maxGPU)
}

// accounting reports whether sacct can be used, probing slurmctld's config
// once when Config.Accounting is "auto".
func (d *Driver) accounting(ctx context.Context) bool {
	switch d.cfg.Accounting {
	case "on":
		return true
	case "off":
		return false
	}
	d.mu.Lock()
	known := d.acct
	d.mu.Unlock()
	if known != nil {
		return *known
	}
	out, err := d.cli.run(ctx, "scontrol", "show", "config")
	if err != nil {
		return false
	}
	on := false
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "AccountingStorageType" {
			on = strings.TrimSpace(v) != "accounting_storage/none"
		}
	}
	d.mu.Lock()
	d.acct = &on
	d.mu.Unlock()
	return on
}

// queryJobs reads the given jobs from scontrol; jobs scontrol has
// forgotten are looked up with sacct when accounting is on. Jobs found
// nowhere are missing from the result.
func (d *Driver) queryJobs(ctx context.Context, ids []string) (map[string]jobInfo, error) {
	out := map[string]jobInfo{}
	if len(ids) == 0 {
		return out, nil
	}
	var text string
	var err error
	if len(ids) == 1 {
		text, err = d.cli.run(ctx, "scontrol", "show", "job", ids[0], "--oneliner")
		if isUnknownJob(err) {
			text, err = "", nil
		}
	} else {
		text, err = d.cli.run(ctx, "scontrol", "show", "job", "--oneliner")
	}
	if err != nil {
		return nil, fmt.Errorf("slurm: read jobs: %w", err)
	}
	for _, kv := range parseOneliners(text) {
		j := jobFromScontrol(kv)
		out[j.ID] = j
	}
	var missing []string
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 || !d.accounting(ctx) {
		return out, nil
	}
	text, err = d.cli.run(ctx, "sacct", "-n", "-P", "-X", "-j", strings.Join(missing, ","),
		"-o", "JobID,JobName,State,ExitCode,Start,End,ElapsedRaw,TotalCPU,AllocCPUS")
	if err != nil {
		return nil, fmt.Errorf("slurm: sacct: %w", err)
	}
	for _, line := range strings.Split(text, "\n") {
		if j, ok := jobFromSacct(line); ok {
			out[j.ID] = j
		}
	}
	return out, nil
}

// refreshUnfinished updates every unfinished task from one Slurm query, so
// capacity held by tasks that ended is released.
func (d *Driver) refreshUnfinished(ctx context.Context) error {
	d.mu.Lock()
	var ts []*task
	var ids []string
	for _, t := range d.tasks {
		if !t.status().State.Final() {
			ts = append(ts, t)
			if id := t.jobID(); id != "" {
				ids = append(ids, id)
			}
		}
	}
	d.mu.Unlock()
	if len(ts) == 0 {
		return nil
	}
	jobs, err := d.queryJobs(ctx, ids)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := t.apply(ctx, jobs); err != nil {
			return err
		}
	}
	return nil
}
