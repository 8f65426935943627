package kubernetes

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestRESTAPIPaths: the REST client sends each call the driver makes to
// the path, method, query and body a Kubernetes API server expects, and
// reads answers and Status errors (NotFound) back.
func TestRESTAPIPaths(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" "+strings.TrimSpace(string(body)))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/log"):
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "hello\n")
		case r.URL.Path == "/apis/batch/v1/namespaces/ns/jobs/missing":
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: 404, Message: `jobs.batch "missing" not found`})
		case strings.HasPrefix(r.URL.Path, "/apis/batch/v1/") && r.Method != http.MethodDelete:
			_ = json.NewEncoder(w).Encode(batchv1.Job{TypeMeta: metav1.TypeMeta{Kind: "Job", APIVersion: "batch/v1"}, ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "ns"}})
		case r.URL.Path == "/api/v1/nodes":
			_ = json.NewEncoder(w).Encode(corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}}})
		case strings.HasSuffix(r.URL.Path, "/pods"):
			_ = json.NewEncoder(w).Encode(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Items: []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p1"}}}})
		default:
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
		}
	}))
	defer srv.Close()
	api, err := newRESTAPI(&rest.Config{Host: srv.URL, QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j"}}
	if j, err := api.BatchV1().Jobs("ns").Create(ctx, job, createOpts); err != nil || j.Name != "j" {
		t.Fatalf("create = %+v, %v", j, err)
	}
	if j, err := api.BatchV1().Jobs("ns").Get(ctx, "j", metav1.GetOptions{}); err != nil || j.Name != "j" {
		t.Fatalf("get = %+v, %v", j, err)
	}
	if _, err := api.BatchV1().Jobs("ns").Get(ctx, "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get missing: %v, want NotFound", err)
	}
	policy := metav1.DeletePropagationForeground
	if err := api.BatchV1().Jobs("ns").Delete(ctx, "j", metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatal(err)
	}
	if l, err := api.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 1 {
		t.Fatalf("nodes = %+v, %v", l, err)
	}
	if l, err := api.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "status.phase!=Succeeded"}); err != nil || len(l.Items) != 1 {
		t.Fatalf("all pods = %+v, %v", l, err)
	}
	if _, err := api.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{LabelSelector: LabelTask + "=j"}); err != nil {
		t.Fatal(err)
	}
	logs := api.CoreV1().Pods("ns").GetLogs("p1", &corev1.PodLogOptions{Follow: true})
	if b, err := logs.DoRaw(ctx); err != nil || string(b) != "hello\n" {
		t.Fatalf("logs = %q, %v", b, err)
	}
	want := []string{
		`POST /apis/batch/v1/namespaces/ns/jobs?fieldManager=pcm {"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"j"`,
		`GET /apis/batch/v1/namespaces/ns/jobs/j? `,
		`GET /apis/batch/v1/namespaces/ns/jobs/missing? `,
		`DELETE /apis/batch/v1/namespaces/ns/jobs/j? {"kind":"DeleteOptions","apiVersion":"batch/v1","propagationPolicy":"Foreground"}`,
		`GET /api/v1/nodes? `,
		`GET /api/v1/pods?fieldSelector=status.phase%21%3DSucceeded `,
		`GET /api/v1/namespaces/ns/pods?labelSelector=` + strings.ReplaceAll(LabelTask, "/", "%2F") + `%3Dj `,
		`GET /api/v1/namespaces/ns/pods/p1/log?follow=true `,
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("requests:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("request %d = %s\nwant prefix   %s", i, got[i], want[i])
		}
	}
}
