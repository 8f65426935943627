package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// cli runs Slurm's commands.
type cli struct {
	binDir    string
	slurmConf string
	timeout   time.Duration
}

// run executes one Slurm command and returns its stdout. A non-zero exit is
// an error that carries the command's stderr.
func (c cli) run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	bin := name
	if c.binDir != "" {
		bin = filepath.Join(c.binDir, name)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if c.slurmConf != "" {
		cmd.Env = append(os.Environ(), "SLURM_CONF="+c.slurmConf)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// keyStart finds where a new Key= begins in scontrol's --oneliner output.
var keyStart = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9:/_.]*=`)

// parseOneliner splits one line of `scontrol show ... --oneliner` into its
// Key=Value pairs. Values may contain spaces (OS=Linux 6.1 #1 SMP ...): a
// word that does not start a new key belongs to the previous value.
func parseOneliner(line string) map[string]string {
	out := map[string]string{}
	last := ""
	for _, word := range strings.Fields(line) {
		if keyStart.MatchString(word) {
			k, v, _ := strings.Cut(word, "=")
			out[k] = v
			last = k
			continue
		}
		if last != "" {
			out[last] += " " + word
		}
	}
	return out
}

// parseOneliners parses every non-empty line.
func parseOneliners(text string) []map[string]string {
	var out []map[string]string
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "No jobs") {
			continue
		}
		out = append(out, parseOneliner(line))
	}
	return out
}

// gres parses a node's Gres field ("gpu:a100:4(S:0-1),shard:8", "gpu:2",
// "(null)") into a GPU count and model.
func gres(field string) (count int, model string) {
	for _, item := range strings.Split(field, ",") {
		item, _, _ = strings.Cut(item, "(")
		parts := strings.Split(item, ":")
		if parts[0] != "gpu" || len(parts) < 2 {
			continue
		}
		n, err := strconv.Atoi(parts[len(parts)-1])
		if err != nil {
			continue
		}
		count += n
		if len(parts) == 3 && model == "" {
			model = parts[1]
		}
	}
	return count, model
}

// jobInfo is what the driver reads about one Slurm job.
type jobInfo struct {
	ID       string
	Name     string
	State    string // Slurm's JobState, e.g. RUNNING, COMPLETED
	Reason   string
	ExitCode int // exit status, or 128+signal when a signal ended it
	Start    time.Time
	End      time.Time
	Wall     time.Duration
	CPUTime  time.Duration // only known through sacct
	NumCPUs  int
	MemoryMB int64
}

// jobFromScontrol converts one parsed `scontrol show job` line.
func jobFromScontrol(kv map[string]string) jobInfo {
	j := jobInfo{
		ID:     kv["JobId"],
		Name:   kv["JobName"],
		State:  kv["JobState"],
		Reason: kv["Reason"],
		Start:  slurmTime(kv["StartTime"]),
		End:    slurmTime(kv["EndTime"]),
		Wall:   slurmDuration(kv["RunTime"]),
	}
	j.ExitCode = exitCode(kv["ExitCode"])
	j.NumCPUs, _ = strconv.Atoi(kv["NumCPUs"])
	j.MemoryMB = memMB(kv["MinMemoryNode"])
	return j
}

// exitCode turns Slurm's "status:signal" into one shell-style number.
func exitCode(field string) int {
	status, signal, _ := strings.Cut(field, ":")
	st, _ := strconv.Atoi(status)
	sig, _ := strconv.Atoi(signal)
	if sig > 0 {
		return 128 + sig
	}
	return st
}

// memMB parses Slurm memory sizes such as "100M", "2G", "512".
func memMB(s string) int64 {
	if s == "" {
		return 0
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'K':
		s, mult = s[:len(s)-1], 1.0/1024
	case 'M':
		s = s[:len(s)-1]
	case 'G':
		s, mult = s[:len(s)-1], 1024
	case 'T':
		s, mult = s[:len(s)-1], 1024*1024
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return int64(f * mult)
}

// slurmTime parses Slurm's local timestamps; "Unknown", "None" and "N/A"
// are the zero time.
func slurmTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}

// slurmDuration parses "[D-]HH:MM:SS", "MM:SS" and "MM:SS.mmm".
func slurmDuration(s string) time.Duration {
	var days int
	if d, rest, ok := strings.Cut(s, "-"); ok {
		days, _ = strconv.Atoi(d)
		s = rest
	}
	parts := strings.Split(s, ":")
	var total float64
	for _, p := range parts {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return 0
		}
		total = total*60 + f
	}
	return time.Duration(float64(days*86400)*float64(time.Second) + total*float64(time.Second))
}

// jobFromSacct parses one line of
// `sacct -n -P -X -o JobID,JobName,State,ExitCode,Start,End,ElapsedRaw,TotalCPU,AllocCPUS`.
func jobFromSacct(line string) (jobInfo, bool) {
	f := strings.Split(strings.TrimSpace(line), "|")
	if len(f) < 9 {
		return jobInfo{}, false
	}
	state, _, _ := strings.Cut(f[2], " ") // "CANCELLED by 0"
	elapsed, _ := strconv.Atoi(f[6])
	cpus, _ := strconv.Atoi(f[8])
	return jobInfo{
		ID: f[0], Name: f[1], State: state, ExitCode: exitCode(f[3]),
		Start: slurmTime(f[4]), End: slurmTime(f[5]),
		Wall:    time.Duration(elapsed) * time.Second,
		CPUTime: slurmDuration(f[7]), NumCPUs: cpus,
	}, true
}

// errUnknownJob means Slurm does not (or no longer) know the job id.
var errUnknownJob = errors.New("slurm does not know this job")

// isUnknownJob reports whether a Slurm command failed because the job id
// is not (or no longer) known to slurmctld.
func isUnknownJob(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Invalid job id")
}

// mapState turns a Slurm job into a pcm state, exit code and message.
// stopRequested makes any unsuccessful end count as cancelled; timeout is
// the task's own timeout (the job script's `timeout` exits 124).
func mapState(j jobInfo, stopRequested bool, timeout time.Duration) (drivers.State, string) {
	switch j.State {
	case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT":
		msg := ""
		if j.Reason != "" && j.Reason != "None" {
			msg = "slurm: " + j.Reason
		}
		return drivers.StatePending, msg
	case "RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED":
		return drivers.StateRunning, ""
	case "COMPLETED":
		if j.ExitCode == 0 {
			return drivers.StateSucceeded, ""
		}
	case "CANCELLED":
		return drivers.StateCancelled, "cancelled (slurm job " + j.ID + ")"
	}
	if stopRequested {
		return drivers.StateCancelled, "stopped (slurm state " + j.State + ")"
	}
	switch {
	case timeout > 0 && (j.ExitCode == 124 || j.ExitCode == 137) && j.State != "OUT_OF_MEMORY":
		return drivers.StateFailed, fmt.Sprintf("timeout: ended after the task's timeout of %s", timeout)
	case j.State == "TIMEOUT":
		return drivers.StateFailed, "slurm time limit reached"
	case j.State == "OUT_OF_MEMORY":
		return drivers.StateFailed, fmt.Sprintf("out of memory (requested %d MB)", j.MemoryMB)
	case j.State == "NODE_FAIL", j.State == "BOOT_FAIL":
		return drivers.StateFailed, "slurm node failure (" + j.State + ")"
	}
	return drivers.StateFailed, fmt.Sprintf("exit code %d (slurm state %s)", j.ExitCode, j.State)
}
