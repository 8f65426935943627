// Package kubernetes is the pcm driver for a Kubernetes cluster, built on
// client-go. Each task is a batch/v1 Job in the configured namespace:
//
//   - one pod, RestartPolicy Never, BackoffLimit 0, the task's CPUs, memory
//     and GPUs (nvidia.com/gpu, or Config.GPUResource) as requests and
//     limits, its env, and its command, script (/bin/sh -c) or image;
//     TaskSpec.Timeout becomes ActiveDeadlineSeconds;
//   - states come from the Job's conditions (Complete, Failed, Suspended)
//     and, while it is active, from its pod's phase; exit codes from the
//     pod's terminated container;
//   - Stop deletes the Job with foreground propagation (its pod goes with
//     it) after saving the pod's logs;
//   - Fingerprint sums the allocatable resources of Ready, schedulable
//     nodes and subtracts the requests of every non-terminated pod that
//     this driver did not create; Free is that minus the driver's own
//     unfinished tasks;
//   - Logs stream from the pod; once a task is final its logs are saved in
//     the state dir, so they outlive the pod and the Job.
//
// Invariants:
//   - every accepted task has a record in StateDir/tasks/<id>/task.json,
//     written before the Job is created, so Recover finds it; Jobs carry the
//     labels app.kubernetes.io/managed-by=pcm and pcm.mesh/task (a DNS-safe
//     form of the id) and the annotation pcm.mesh/task-id (the exact id);
//   - a final status is stored in the record, so it survives the Job's
//     deletion;
//   - the driver admits at most Fingerprint's Total on the dimensions it
//     accounts (CPUs, memory, GPUs).
//
// Configuration comes from a kubeconfig file (Config.Kubeconfig, optional
// Config.Context) or, when none is given, the in-cluster service account.
package kubernetes
