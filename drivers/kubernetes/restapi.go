package kubernetes

import (
	"context"
	"fmt"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// restAPI is API over client-go's REST client, with a scheme that knows
// core/v1 and batch/v1 only (see API).
type restAPI struct{ core, batch *rest.RESTClient }

// newRESTAPI builds the two REST clients (core/v1 at /api, batch/v1 at
// /apis) from rc. It makes no API call.
func newRESTAPI(rc *rest.Config) (*restAPI, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, batchv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("kubernetes: scheme: %w", err)
		}
	}
	codecs := serializer.NewCodecFactory(scheme)
	base := rest.CopyConfig(rc)
	if base.RateLimiter == nil && base.QPS > 0 {
		// One limiter for both groups, as client-go's clientset shares one.
		base.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(base.QPS, base.Burst)
	}
	if base.UserAgent == "" {
		base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	httpClient, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: build client: %w", err)
	}
	client := func(path string, gv schema.GroupVersion) (*rest.RESTClient, error) {
		c := rest.CopyConfig(base)
		c.APIPath = path
		c.GroupVersion = &gv
		c.NegotiatedSerializer = codecs.WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(c, httpClient)
		if err != nil {
			return nil, fmt.Errorf("kubernetes: build client: %w", err)
		}
		return rc, nil
	}
	core, err := client("/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	batch, err := client("/apis", batchv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &restAPI{core: core, batch: batch}, nil
}

func (a *restAPI) BatchV1() BatchV1API { return restBatch{a.batch} }
func (a *restAPI) CoreV1() CoreV1API   { return restCore{a.core} }

type restBatch struct{ c *rest.RESTClient }

func (b restBatch) Jobs(ns string) JobsAPI { return restJobs{b.c, ns} }

type restCore struct{ c *rest.RESTClient }

func (c restCore) Pods(ns string) PodsAPI { return restPods{c.c, ns} }
func (c restCore) Nodes() NodesAPI        { return restNodes{c.c} }

// listParams sets the query parameters of the ListOptions the driver uses.
func listParams(r *rest.Request, opts metav1.ListOptions) *rest.Request {
	if opts.LabelSelector != "" {
		r = r.Param("labelSelector", opts.LabelSelector)
	}
	if opts.FieldSelector != "" {
		r = r.Param("fieldSelector", opts.FieldSelector)
	}
	if opts.Limit > 0 {
		r = r.Param("limit", strconv.FormatInt(opts.Limit, 10))
	}
	if opts.Continue != "" {
		r = r.Param("continue", opts.Continue)
	}
	if opts.ResourceVersion != "" {
		r = r.Param("resourceVersion", opts.ResourceVersion)
	}
	return r
}

type restJobs struct {
	c  *rest.RESTClient
	ns string
}

func (j restJobs) Create(ctx context.Context, job *batchv1.Job, opts metav1.CreateOptions) (*batchv1.Job, error) {
	out := &batchv1.Job{}
	r := j.c.Post().Namespace(j.ns).Resource("jobs").Body(job)
	if opts.FieldManager != "" {
		r = r.Param("fieldManager", opts.FieldManager)
	}
	for _, d := range opts.DryRun {
		r = r.Param("dryRun", d)
	}
	return out, r.Do(ctx).Into(out)
}

func (j restJobs) Get(ctx context.Context, name string, _ metav1.GetOptions) (*batchv1.Job, error) {
	out := &batchv1.Job{}
	return out, j.c.Get().Namespace(j.ns).Resource("jobs").Name(name).Do(ctx).Into(out)
}

func (j restJobs) List(ctx context.Context, opts metav1.ListOptions) (*batchv1.JobList, error) {
	out := &batchv1.JobList{}
	return out, listParams(j.c.Get().Namespace(j.ns).Resource("jobs"), opts).Do(ctx).Into(out)
}

func (j restJobs) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return j.c.Delete().Namespace(j.ns).Resource("jobs").Name(name).Body(&opts).Do(ctx).Error()
}

type restPods struct {
	c  *rest.RESTClient
	ns string
}

func (p restPods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	out := &corev1.PodList{}
	return out, listParams(p.c.Get().Namespace(p.ns).Resource("pods"), opts).Do(ctx).Into(out)
}

func (p restPods) GetLogs(name string, opts *corev1.PodLogOptions) *rest.Request {
	r := p.c.Get().Namespace(p.ns).Resource("pods").Name(name).SubResource("log")
	if opts == nil {
		return r
	}
	if opts.Container != "" {
		r = r.Param("container", opts.Container)
	}
	if opts.Follow {
		r = r.Param("follow", "true")
	}
	if opts.Previous {
		r = r.Param("previous", "true")
	}
	if opts.TailLines != nil {
		r = r.Param("tailLines", strconv.FormatInt(*opts.TailLines, 10))
	}
	if opts.Timestamps {
		r = r.Param("timestamps", "true")
	}
	return r
}

type restNodes struct{ c *rest.RESTClient }

func (n restNodes) List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	out := &corev1.NodeList{}
	return out, listParams(n.c.Get().Resource("nodes"), opts).Do(ctx).Into(out)
}
