package policy

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics. A nil *metrics records
// nothing.
type metrics struct {
	reloads  *prometheus.CounterVec
	revision *prometheus.GaugeVec
	latency  prometheus.Histogram
	errors   prometheus.Counter
	// sharedHit and sharedMiss count lookups of shared results.
	sharedHit, sharedMiss prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_policy_reloads_total",
			Help: "Policy loads by result: success, or failure when a change was refused.",
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authzd_policy_revision_info",
			Help: "The serving policy revision, as a label; the value is always 1.",
		}, []string{"revision"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "authzd_policy_evaluation_duration_seconds",
			Help:    "Time to evaluate the policy for one decision.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authzd_policy_evaluation_errors_total",
			Help: "Policy evaluations that failed: runtime errors, wrong types, timeouts.",
		}),
	}
	shared := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authzd_policy_shared_results_total",
		Help: "Lookups of results shared between people with equal declared input (rule input_paths), by result: hit or miss.",
	}, []string{"result"})
	m.sharedHit = shared.WithLabelValues("hit")
	m.sharedMiss = shared.WithLabelValues("miss")
	var errs []error
	for _, c := range []prometheus.Collector{m.reloads, m.revision, m.latency, m.errors, shared} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register policy metrics: %w", err)
	}
	// Both results exist from the start, so that rate() sees the first one.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m, nil
}

func (m *metrics) reloaded(result string) {
	if m != nil {
		m.reloads.WithLabelValues(result).Inc()
	}
}

func (m *metrics) observe(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.latency.Observe(d.Seconds())
	if err != nil {
		m.errors.Inc()
	}
}

func (m *metrics) shared(hit bool) {
	switch {
	case m == nil:
	case hit:
		m.sharedHit.Inc()
	default:
		m.sharedMiss.Inc()
	}
}
