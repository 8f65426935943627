package kubernetes

import (
	"log/slog"

	"k8s.io/client-go/kubernetes"
)

// NewWithClient is NewWithAPI with a client-go clientset (the tests'
// fake): its typed clients have the shapes of API's inner interfaces.
func NewWithClient(cfg Config, client kubernetes.Interface, logger *slog.Logger) (*Driver, error) {
	return NewWithAPI(cfg, clientsetAPI{client}, logger)
}

type clientsetAPI struct{ c kubernetes.Interface }

func (a clientsetAPI) BatchV1() BatchV1API { return clientsetBatch{a.c} }
func (a clientsetAPI) CoreV1() CoreV1API   { return clientsetCore{a.c} }

type clientsetBatch struct{ c kubernetes.Interface }

func (b clientsetBatch) Jobs(ns string) JobsAPI { return b.c.BatchV1().Jobs(ns) }

type clientsetCore struct{ c kubernetes.Interface }

func (c clientsetCore) Pods(ns string) PodsAPI { return c.c.CoreV1().Pods(ns) }
func (c clientsetCore) Nodes() NodesAPI        { return c.c.CoreV1().Nodes() }
