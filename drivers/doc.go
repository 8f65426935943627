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
package drivers
