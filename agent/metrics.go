package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pcm-mesh/pcm/consensus"
)

// metrics are the agent's Prometheus metrics, on its own registry (no
// globals), served at /metrics.
type metrics struct {
	reg        *prometheus.Registry
	tasks      *prometheus.CounterVec
	rounds     *prometheus.CounterVec
	placement  prometheus.Histogram
	attempts   *prometheus.CounterVec
	settlement prometheus.Counter
	refusals   consensus.Counts
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcm_broker_tasks_total", Help: "Task state transitions at this broker, by state.",
		}, []string{"state"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcm_negotiation_rounds_total", Help: "Negotiation rounds run by this broker, by outcome (placed, unplaced).",
		}, []string{"outcome"}),
		placement: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pcm_placement_seconds", Help: "Time from submission to a committed agreement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pcm_provider_attempts_total", Help: "Task attempts this provider ran, by outcome.",
		}, []string{"event"}),
		settlement: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pcm_settled_micros_total", Help: "Micros this broker settled to providers.",
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(m.tasks, m.rounds, m.placement, m.attempts, m.settlement,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("pcm_peers", "Connected peers.", func() float64 { return float64(len(a.node.Host().Network().Peers())) }),
		gauge("pcm_providers", "Providers in the resource table.", func() float64 { return float64(a.node.Table().Len()) }),
		gauge("pcm_adverts_accepted_total", "Adverts accepted by the validator.", func() float64 { return float64(a.node.ValidatorStats().Accepted) }),
		gauge("pcm_adverts_rejected_total", "Adverts refused by the validator (all reasons).", func() float64 {
			var n uint64
			for _, v := range a.node.ValidatorStats().Rejected {
				n += v
			}
			return float64(n)
		}),
		gauge("pcm_results_held_bytes", "Bytes of results archives this agent keeps.", func() float64 { return float64(a.resultsStatus().Bytes) }),
		gauge("pcm_results_fetched_total", "Results archives fetched from other agents and verified.", func() float64 { return float64(a.ResultsStats().Fetched) }),
		gauge("pcm_results_fetch_bytes_total", "Bytes received by results fetches.", func() float64 { return float64(a.ResultsStats().Bytes) }),
		gauge("pcm_results_corrupt_total", "Results transfers dropped because their digest or size was wrong.", func() float64 { return float64(a.ResultsStats().Corrupt) }),
		gauge("pcm_results_truncated_total", "Results transfers cut short (resumed from the next holder).", func() float64 { return float64(a.ResultsStats().Truncated) }),
		gauge("pcm_ledger_index", "Last ledger index applied here.", func() float64 {
			if a.ledger == nil {
				return 0
			}
			i, _ := a.ledger.Head()
			return float64(i)
		}),
		gauge("pcm_ledger_healthy", "1 when this agent can write to the ledger (joined, a leader known).", func() float64 {
			if a.LedgerHealth().Healthy {
				return 1
			}
			return 0
		}),
		gauge("pcm_ledger_leader", "1 when this agent leads the ledger.", func() float64 {
			if a.ledger != nil && a.ledger.IsLeader() {
				return 1
			}
			return 0
		}),
		refusalCollector{a},
		gauge("pcm_provider_running", "Attempts running on this provider.", func() float64 { return float64(a.provider.Running()) }),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Transition counts a broker task transition; placement latency is
// observed on the first placement.
func (m *metrics) Transition(t *Task) {
	m.tasks.WithLabelValues(t.State).Inc()
	if t.State == StatePlaced && t.Attempt == 1 {
		m.placement.Observe(time.Since(t.SubmittedAt).Seconds())
	}
}

// Round counts a negotiation round by outcome.
func (m *metrics) Round(placed bool) {
	if placed {
		m.rounds.WithLabelValues("placed").Inc()
		return
	}
	m.rounds.WithLabelValues("unplaced").Inc()
}

// Settled adds a recorded settlement's amount.
func (m *metrics) Settled(amount int64) { m.settlement.Add(float64(amount)) }

// Attempt counts an attempt event this provider recorded.
func (m *metrics) Attempt(kind string) { m.attempts.WithLabelValues(kind).Inc() }
