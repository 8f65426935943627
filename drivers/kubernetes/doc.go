// Package kubernetes is the pcm driver for a Kubernetes cluster, built on
// client-go's REST client with a scheme of core/v1 and batch/v1 only (api.go
// says why not the clientset). Each task is a batch/v1 Job in the
// configured namespace:
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
//   - Fingerprint sums, over Ready, schedulable nodes, the allocatable
//     resources minus the requests of every non-terminated pod that this
//     driver instance did not create; Free is that minus the driver's own
//     unfinished tasks. Start also refuses a task that no single node
//     could hold, and a pod the scheduler finds no node for during
//     Config.UnschedulableTimeout fails its task (its Job is deleted);
//   - Logs stream from the pod; once a task is final its logs are saved in
//     the state dir, so they outlive the pod and the Job. A kubelet that
//     serves no logs (kwok's simulated nodes) gives ErrLogsUnavailable.
//
// Invariants:
//   - every accepted task has a record in StateDir/tasks/<id>/task.json,
//     written before the Job is created, so Recover finds it; Jobs are
//     named pcm-<DNS-safe id>-<instance> (instance: 6 hex digits kept in
//     StateDir/instance.json, so agents sharing a namespace never collide)
//     and carry the labels app.kubernetes.io/managed-by=pcm,
//     pcm.mesh/task (the Job name) and pcm.mesh/instance, and the
//     annotation pcm.mesh/task-id (the exact id);
//   - a final status is stored in the record, so it survives the Job's
//     deletion;
//   - the driver admits at most Fingerprint's Total on the dimensions it
//     accounts (CPUs, memory, GPUs).
//
// Configuration comes from a kubeconfig file (Config.Kubeconfig, optional
// Config.Context) or, when none is given, the in-cluster service account.
package kubernetes
