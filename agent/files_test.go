package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/sim"
	"github.com/pcm-mesh/pcm/testnet"
)

// A provider whose driver cannot collect outputs (sim) declines a task
// that declares them, saying why; the task stays queued.
func TestProviderWithoutFilesDeclinesOutputs(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 2, Drivers: func(_ int, dir string) ([]drivers.Driver, error) {
		d, err := sim.New(sim.Config{StateDir: dir}, nil)
		return []drivers.Driver{d}, err
	}})
	m.WaitForMesh(30 * time.Second)
	a := m.Nodes[0].Agent()
	tk, err := a.Submit([]byte("name: wants-files\nresources: {cpu: 1}\ncommand: [x]\noutputs: {paths: [out]}\n"), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m.WaitFor(time.Minute, "a decline naming the missing capability", func() bool {
		st, err := a.TaskStatus(t.Context(), tk.ID)
		if err != nil {
			return false
		}
		for _, r := range st.Rounds {
			for _, d := range r.Declines {
				if slices.ContainsFunc(d.Reasons, func(s string) bool { return strings.Contains(s, "cannot stage inputs or collect outputs") }) {
					return st.State == agent.StateQueued || st.State == agent.StateNegotiating
				}
			}
		}
		return false
	})
}
