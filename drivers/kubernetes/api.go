package kubernetes

import (
	"context"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// API is the part of the Kubernetes API the driver uses: Jobs, pods and
// their logs, nodes. Its methods have client-go's typed clientset shapes,
// so a clientset's Jobs(ns), Pods(ns) and Nodes() satisfy the inner
// interfaces; the driver itself talks REST (restAPI) with a scheme of the
// two groups it uses, because client-go's clientset registers every API
// group of Kubernetes at start-up: 13 MB of an idle agent's 56 MB RSS and
// half of its binary, for a driver most agents never enable.
type API interface {
	BatchV1() BatchV1API
	CoreV1() CoreV1API
}

// BatchV1API is the batch/v1 group: Jobs.
type BatchV1API interface {
	Jobs(namespace string) JobsAPI
}

// CoreV1API is the core/v1 group: pods and nodes.
type CoreV1API interface {
	Pods(namespace string) PodsAPI
	Nodes() NodesAPI
}

// JobsAPI creates, reads and deletes Jobs of one namespace.
type JobsAPI interface {
	Create(ctx context.Context, job *batchv1.Job, opts metav1.CreateOptions) (*batchv1.Job, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*batchv1.Job, error)
	List(ctx context.Context, opts metav1.ListOptions) (*batchv1.JobList, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// PodsAPI lists pods of one namespace (or all) and reads their logs.
type PodsAPI interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	GetLogs(name string, opts *corev1.PodLogOptions) *rest.Request
}

// NodesAPI lists nodes.
type NodesAPI interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
}
