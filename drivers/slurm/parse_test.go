package slurm

import (
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

func TestParseOneliner(t *testing.T) {
	line := "NodeName=vm Arch=x86_64 CPUTot=2 OS=Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC RealMemory=24105 AllocNode:Sid=localhost:6065 CPUs/Task=1 Reason=None"
	kv := parseOneliner(line)
	for k, want := range map[string]string{
		"NodeName": "vm", "CPUTot": "2", "OS": "Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC",
		"RealMemory": "24105", "AllocNode:Sid": "localhost:6065", "CPUs/Task": "1", "Reason": "None",
	} {
		if kv[k] != want {
			t.Errorf("%s = %q, want %q", k, kv[k], want)
		}
	}
}

func TestGres(t *testing.T) {
	for _, tc := range []struct {
		in    string
		n     int
		model string
	}{
		{"(null)", 0, ""},
		{"gpu:2", 2, ""},
		{"gpu:a100:4(S:0-1)", 4, "a100"},
		{"gpu:a100:2,gpu:v100:1,shard:8", 3, "a100"},
		{"shard:8", 0, ""},
	} {
		n, model := gres(tc.in)
		if n != tc.n || model != tc.model {
			t.Errorf("gres(%q) = %d, %q; want %d, %q", tc.in, n, model, tc.n, tc.model)
		}
	}
}

func TestSmallParsers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{{"0:0", 0}, {"3:0", 3}, {"0:15", 143}, {"0:9", 137}} {
		if got := exitCode(tc.in); got != tc.want {
			t.Errorf("exitCode(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want int64
	}{{"100M", 100}, {"2G", 2048}, {"512", 512}, {"2048K", 2}, {"1.5G", 1536}, {"", 0}, {"x", 0}} {
		if got := memMB(tc.in); got != tc.want {
			t.Errorf("memMB(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{{"00:00:05", 5 * time.Second}, {"1-02:03:04", 26*time.Hour + 3*time.Minute + 4*time.Second}, {"01:30", 90 * time.Second}, {"00:01.500", 1500 * time.Millisecond}, {"bad", 0}} {
		if got := slurmDuration(tc.in); got != tc.want {
			t.Errorf("slurmDuration(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if !slurmTime("Unknown").IsZero() || slurmTime("2026-11-28T22:59:06").IsZero() {
		t.Error("slurmTime: Unknown must be zero and a timestamp must parse")
	}
}

func TestMapState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		job     jobInfo
		stop    bool
		timeout time.Duration
		want    drivers.State
		msg     string
	}{
		{"pending with reason", jobInfo{State: "PENDING", Reason: "Resources"}, false, 0, drivers.StatePending, "Resources"},
		{"running", jobInfo{State: "RUNNING"}, false, 0, drivers.StateRunning, ""},
		{"completing is not final", jobInfo{State: "COMPLETING"}, false, 0, drivers.StateRunning, ""},
		{"completed", jobInfo{State: "COMPLETED"}, false, 0, drivers.StateSucceeded, ""},
		{"failed exit", jobInfo{State: "FAILED", ExitCode: 3}, false, 0, drivers.StateFailed, "exit code 3"},
		{"cancelled", jobInfo{ID: "7", State: "CANCELLED"}, false, 0, drivers.StateCancelled, "job 7"},
		{"failed after stop", jobInfo{State: "FAILED", ExitCode: 143}, true, 0, drivers.StateCancelled, "stopped"},
		{"own timeout", jobInfo{State: "FAILED", ExitCode: 124}, false, time.Second, drivers.StateFailed, "timeout of 1s"},
		{"124 without timeout", jobInfo{State: "FAILED", ExitCode: 124}, false, 0, drivers.StateFailed, "exit code 124"},
		{"slurm timeout", jobInfo{State: "TIMEOUT"}, false, 0, drivers.StateFailed, "time limit"},
		{"oom", jobInfo{State: "OUT_OF_MEMORY", MemoryMB: 64}, false, 0, drivers.StateFailed, "out of memory (requested 64 MB)"},
		{"node fail", jobInfo{State: "NODE_FAIL"}, false, 0, drivers.StateFailed, "node failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, msg := mapState(tc.job, tc.stop, tc.timeout)
			if st != tc.want || !strings.Contains(msg, tc.msg) {
				t.Errorf("mapState = %s %q; want %s containing %q", st, msg, tc.want, tc.msg)
			}
		})
	}
}

func TestJobFromSacct(t *testing.T) {
	j, ok := jobFromSacct("42|pcm-a|CANCELLED by 0|0:15|2026-11-28T10:00:00|2026-11-28T10:00:07|7|00:03.250|2")
	if !ok {
		t.Fatal("line not parsed")
	}
	if j.ID != "42" || j.Name != "pcm-a" || j.State != "CANCELLED" || j.ExitCode != 143 ||
		j.Wall != 7*time.Second || j.CPUTime != 3250*time.Millisecond || j.NumCPUs != 2 {
		t.Errorf("got %+v", j)
	}
	if _, ok := jobFromSacct("short|line"); ok {
		t.Error("a short line must not parse")
	}
}

func TestParseClusterInfo(t *testing.T) {
	parts := "PartitionName=debug Default=YES State=UP Nodes=n[1-2]\nPartitionName=gpu Default=NO State=UP Nodes=g1\n"
	nodes := "NodeName=n1 CPUTot=4 RealMemory=8000 Gres=(null) State=IDLE Partitions=debug Version=22.05.8\n" +
		"NodeName=n2 CPUTot=8 RealMemory=16000 Gres=(null) State=MIXED Partitions=debug\n" +
		"NodeName=g1 CPUTot=16 RealMemory=64000 Gres=gpu:a100:4(S:0) State=IDLE Partitions=gpu,debug\n"
	info := parseClusterInfo(parts, nodes)
	if got := info.defaultPartition(""); got != "debug" {
		t.Fatalf("default partition = %q", got)
	}
	if n := len(info.nodesOf("debug")); n != 3 {
		t.Errorf("debug has %d nodes, want 3", n)
	}
	if info.version != "22.05.8" {
		t.Errorf("version = %q", info.version)
	}
	for _, tc := range []struct {
		part string
		res  drivers.Resources
		ok   bool
	}{
		{"", drivers.Resources{CPUs: 8, MemoryMB: 16000}, true},
		{"gpu", drivers.Resources{CPUs: 2, MemoryMB: 100, GPUs: 4}, true},
		{"gpu", drivers.Resources{CPUs: 2, MemoryMB: 100, GPUs: 5}, false},
		{"debug", drivers.Resources{CPUs: 17, MemoryMB: 100}, false},
		{"nope", drivers.Resources{CPUs: 1, MemoryMB: 1}, false},
	} {
		if err := info.fits(tc.part, tc.res); (err == nil) != tc.ok {
			t.Errorf("fits(%q, %+v) = %v, want ok=%v", tc.part, tc.res, err, tc.ok)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want string // substring of the error; "" means success
	}{
		{"minimal", `{}`, ""},
		{"full", `{"partition":"debug","account":"a","qos":"normal","max_cpus":1,"poll_interval":"50ms"}`, ""},
		{"unknown key", `{"partitoin":"debug"}`, "unknown field"},
		{"bad duration", `{"poll_interval":"soon"}`, "poll_interval"},
		{"negative cpus", `{"max_cpus":-1}`, "max_cpus"},
		{"bad accounting", `{"accounting":"maybe"}`, "accounting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := FromConfig([]byte(tc.raw), t.TempDir(), nil)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.Name() != "slurm" {
					t.Errorf("name = %q", d.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := New(Config{}, nil); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("New without state dir: %v", err)
	}
}

func TestBatchScript(t *testing.T) {
	d, err := New(Config{StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{Spec: drivers.TaskSpec{ID: "a", Command: []string{"echo", "it's"}, Env: map[string]string{"B": "x y", "A": "1"}, Timeout: 1500 * time.Millisecond}}
	got := d.batchScript(rec)
	for _, want := range []string{"#!/bin/sh\n", "export A='1'\nexport B='x y'\n", `exec timeout -k 5 1.5 'echo' 'it'\''s'`} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
}
