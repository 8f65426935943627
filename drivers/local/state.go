package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pcm-mesh/pcm/drivers"
)

// record is what task.json holds.
type record struct {
	Spec   drivers.TaskSpec `json:"spec"`
	Status drivers.Status   `json:"status"`
	// PID is the wrapper shell's pid, which is also the process group id.
	PID int `json:"pid,omitempty"`
	// PIDStart is field 22 of /proc/<pid>/stat (clock ticks after boot):
	// a pid with another start time is a different process.
	PIDStart uint64 `json:"pid_start,omitempty"`
	// Stopping is why the driver is ending the task ("cancelled" or
	// "timeout"); it decides the final state whatever the exit code.
	Stopping string `json:"stopping,omitempty"`
}

const (
	recordFile   = "task.json"
	logFile      = "output.log"
	exitCodeFile = "exitcode"
	workDir      = "work"
	scriptFile   = "script"
)

func tasksDir(stateDir string) string { return filepath.Join(stateDir, "tasks") }

func taskDir(stateDir, id string) string { return filepath.Join(stateDir, "tasks", id) }

// writeRecord replaces dir/task.json atomically: a reader (or a restarted
// agent) sees the old or the new record, never a torn one.
func writeRecord(dir string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode task %s: %w", r.Spec.ID, err)
	}
	tmp := filepath.Join(dir, recordFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write task %s record: %w", r.Spec.ID, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordFile)); err != nil {
		return fmt.Errorf("write task %s record: %w", r.Spec.ID, err)
	}
	return nil
}

func readRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(dir, recordFile), err)
	}
	return &r, nil
}

// readExitCode returns the code the wrapper wrote, or ok=false.
func readExitCode(dir string) (code int, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, exitCodeFile))
	if err != nil {
		return 0, false
	}
	code, err = strconv.Atoi(string(bytes.TrimSpace(b)))
	return code, err == nil
}

// procStat returns the state letter and start time of pid from
// /proc/<pid>/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after the last ')' are fixed: state is field 3, starttime 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, errors.New("short /proc stat")
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse start time: %w", err)
	}
	return f[0][0], start, nil
}

// alive reports whether pid is still the process that started at start
// and has not exited (a zombie has exited: its parent, possibly an init
// that does not reap, just has not collected it).
func alive(pid int, start uint64) bool {
	state, s, err := procStat(pid)
	return err == nil && s == start && state != 'Z' && state != 'X'
}
