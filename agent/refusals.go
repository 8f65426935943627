package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pcm-mesh/pcm/consensus"
)

func (m *metrics) refused(kind string) { m.refusals.Add(kind) }

// Refusals counts everything this agent refused from peers, by kind:
// task operations (task_cancel, task_logs, task_query), ledger requests
// and entries (join, propose, apply, raft_stranger_inbound/outbound) and
// adverts (advert_<reason>).
func (a *Agent) Refusals() map[string]uint64 {
	out := a.metrics.refusals.Snapshot()
	if a.ledger != nil {
		for k, v := range a.ledger.Refusals() {
			out["ledger_"+k] += v
		}
	}
	for k, v := range a.node.ValidatorStats().Rejected {
		out["advert_"+k] += v
	}
	return out
}

// refusalCollector exports Refusals as pcm_refused_total{kind}.
type refusalCollector struct{ a *Agent }

var refusedDesc = prometheus.NewDesc("pcm_refused_total", "Requests, messages and ledger entries refused from peers, by kind.", []string{"kind"}, nil)

func (c refusalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc }
func (c refusalCollector) Collect(ch chan<- prometheus.Metric) {
	for k, v := range c.a.Refusals() {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(v), k)
	}
}

// forkWatch compares this replica's chain with the other replicas' every
// interval; Status shows the last report.
func (a *Agent) forkWatch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.ledger.Role() == consensus.RoleClient {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		rep, err := a.ledger.CheckPeers(cctx)
		cancel()
		if err != nil {
			continue
		}
		if !rep.OK() {
			a.log.Error("ledger fork: this replica's chain differs from other replicas'", "diverged", rep.Diverged)
		}
		a.fork.Store(&rep)
	}
}
