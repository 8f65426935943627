package local

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// Config configures the local driver. Zero fields take the defaults
// documented on each field.
type Config struct {
	// StateDir holds task records, logs and work dirs. Required.
	StateDir string `json:"state_dir"`
	// Capacity offered; zero fields are detected: CPUs = runtime.NumCPU(),
	// MemoryMB = MemTotal of /proc/meminfo, DiskMB = space available on
	// StateDir's file system.
	Capacity drivers.Resources `json:"capacity"`
	// Shell runs the wrapper; default /bin/sh.
	Shell string `json:"shell"`
	// Path is $PATH for tasks; default the agent's $PATH.
	Path string `json:"path"`
	// Env is added to every task's environment (task env wins).
	Env map[string]string `json:"env"`
	// Grace is how long Stop waits after SIGTERM when the caller gives
	// none, and how long a timed-out task gets; default 10s.
	Grace drivers.Duration `json:"grace"`
	// PollInterval bounds how late timeouts, escalation and the exit of a
	// reattached (non-child) process are noticed; default 100ms.
	PollInterval drivers.Duration `json:"poll_interval"`
	// NoMemoryLimit disables RLIMIT_AS = resources.memory_mb (ulimit -v).
	// Some runtimes (the JVM, Go) reserve much more address space than they
	// use; set this for them.
	NoMemoryLimit bool `json:"no_memory_limit"`
	// Attributes are added to the fingerprint.
	Attributes map[string]string `json:"attributes"`
}

// DefaultConfig returns a config on stateDir with every default applied.
func DefaultConfig(stateDir string) Config {
	c := Config{StateDir: stateDir}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Shell == "" {
		c.Shell = "/bin/sh"
	}
	if c.Path == "" {
		c.Path = os.Getenv("PATH")
		if c.Path == "" {
			c.Path = "/usr/local/bin:/usr/bin:/bin"
		}
	}
	if c.Grace == 0 {
		c.Grace = drivers.Duration(10 * time.Second)
	}
	if c.PollInterval == 0 {
		c.PollInterval = drivers.Duration(100 * time.Millisecond)
	}
	if c.Capacity.CPUs == 0 {
		c.Capacity.CPUs = float64(runtime.NumCPU())
	}
	if c.Capacity.MemoryMB == 0 {
		c.Capacity.MemoryMB = memTotalMB()
	}
	if c.Capacity.DiskMB == 0 && c.StateDir != "" {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(c.StateDir, &fs); err == nil {
			c.Capacity.DiskMB = int64(fs.Bavail) * fs.Bsize / (1 << 20)
		}
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.StateDir == "":
		return errors.New("local: state_dir is empty; set it to a writable directory")
	case c.Capacity.CPUs < 0 || c.Capacity.MemoryMB < 0 || c.Capacity.DiskMB < 0 || c.Capacity.GPUs < 0:
		return fmt.Errorf("local: capacity %+v has a negative field; use values >= 0", c.Capacity)
	case c.Grace < 0:
		return fmt.Errorf("local: grace is %s; use a duration >= 0", c.Grace.D())
	case c.PollInterval <= 0:
		return fmt.Errorf("local: poll_interval is %s; use a positive duration", c.PollInterval.D())
	}
	if _, err := os.Stat(c.Shell); err != nil {
		return fmt.Errorf("local: shell %q: %w; set shell to a POSIX sh", c.Shell, err)
	}
	return nil
}

func memTotalMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1024
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 1024
}
