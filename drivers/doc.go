// Package drivers defines the contract between pcm and the back ends that
// run tasks (local processes, Slurm, Kubernetes, external plugins and a
// simulator), and the resource types they share.
//
// Invariants every driver keeps:
//   - it never admits more than its fingerprinted capacity (Start fails with
//     ErrCapacity instead);
//   - bad specs are refused with ErrInvalidSpec before anything starts;
//   - task state is written to the driver's state dir before Start returns,
//     so Recover after a restart finds every accepted task.
//
// The conformance suite in drivers/drivertest runs against every driver.
// follow.go holds what the drivers share for Wait, Recover and Logs:
// PollUntilFinal and WaitDone, StatusesOf, and Follower (an output reader
// that follows a task until it ends, then drains and returns io.EOF).
package drivers
