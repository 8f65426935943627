// Package slurm is the pcm driver for a real Slurm cluster. It shells out to
// Slurm's own commands, so it works with any Slurm that the agent's host can
// submit to:
//
//   - Start writes a batch script and submits it with `sbatch --parsable`
//     (one node, one task, --cpus-per-task, --mem, optional --gres=gpu,
//     partition/account/QoS from the config or the task's options);
//   - Status and Wait read `scontrol show job --oneliner` (and `sacct` when
//     Slurm accounting is configured, for jobs scontrol has forgotten);
//   - Stop runs `scancel` (SIGTERM, Slurm's KillWait, SIGKILL), then
//     `scancel --signal=KILL --full` once the grace period ends;
//   - Fingerprint reads `scontrol show partition` and `scontrol show node`
//     (CPUs, memory, GRES GPUs, partitions);
//   - Logs reads the job's output file (stdout and stderr combined), which
//     Slurm writes into the task's directory under the state dir.
//
// Invariants:
//   - every accepted task has a record (state.go) in StateDir/tasks/<id>/
//     that is written before sbatch runs and updated with the job id right
//     after, so Recover after a restart reattaches to every job; a record
//     without a job id is looked up by its job name (pcm-<task id>);
//   - a job is only trusted to be the task's when its JobName matches, so a
//     cluster that reuses job ids never reports someone else's job;
//   - the driver admits at most its fingerprinted capacity: Total (the
//     configured partition's nodes, optionally capped by Config.MaxCPUs and
//     Config.MaxMemoryMB) minus the resources of its own unfinished tasks.
//     Other users' jobs may still make a task wait in Slurm's queue;
//   - a final status, once observed, is stored in the record, so it
//     survives Slurm forgetting the job (MinJobAge) and agent restarts.
//
// The state dir must be on a file system that the Slurm compute nodes share
// with the agent (output files are written by slurmd on the node).
package slurm
