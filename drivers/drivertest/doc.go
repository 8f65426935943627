// Package drivertest is the conformance suite every pcm driver passes.
//
// A driver package calls Run from a test with a Harness that builds fresh
// drivers and the few specs the suite needs:
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, drivertest.Harness{
//			New:       func(t *testing.T, dir string) drivers.Driver { ... },
//			PrintExit: func(id, out string, code int) drivers.TaskSpec { ... },
//			Sleep:     func(id string) drivers.TaskSpec { ... },
//		})
//	}
//
// The suite never sleeps to wait: it polls conditions with deadlines that
// Harness.TimeoutScale stretches for slow back ends (a real scheduler may
// keep a task pending for a while), and it never asserts on timing.
//
// Optional behaviours are declared in Harness.Caps. Caps.NoLogs is for back
// ends that keep no task output (Kubernetes nodes simulated by kwok): every
// case still runs, and where it would read output it checks instead that
// Logs fails with drivers.ErrLogsUnavailable and says why.
package drivertest
