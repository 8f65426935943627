package slurm

import (
	"fmt"
	"testing"

	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/drivertest"
)

// TestConformance runs the shared driver suite against the real cluster.
func TestConformance(t *testing.T) {
	requireSlurm(t)
	drivertest.Run(t, drivertest.Harness{
		New: func(t *testing.T, dir string) drivers.Driver {
			return newDriver(t, dir, nil)
		},
		PrintExit: func(id, out string, code int) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"/bin/sh", "-c", `printf '%s\n' "$1"; exit "$2"`, "sh", out, fmt.Sprint(code)}}
		},
		Sleep: func(id string) drivers.TaskSpec {
			return drivers.TaskSpec{Command: []string{"sleep", "900"}}
		},
		// Slurm keeps a job pending for about a second before it runs.
		TimeoutScale: 3,
		Caps:         drivertest.Caps{Recover: true, Timeout: true, Stream: true},
	})
}
