package token

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the verifier's Prometheus metrics. A nil *metrics records
// nothing, so call sites need no checks.
type metrics struct {
	verifications *prometheus.CounterVec
	fetches       *prometheus.CounterVec
	limited       *prometheus.CounterVec
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
}

// issuerCollector reports per-issuer key state at scrape time.
type issuerCollector struct {
	v      *Verifier
	age    *prometheus.Desc
	keys   *prometheus.Desc
	up     *prometheus.Desc
	cached *prometheus.Desc
}

func newMetrics(reg prometheus.Registerer, v *Verifier) (*metrics, error) {
	m := &metrics{
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_token_verifications_total",
			Help: "ID token verifications by issuer (empty when not trusted), result (ok, refused, unavailable) and reason.",
		}, []string{"issuer", "result", "reason"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_token_key_fetches_total",
			Help: "Key set fetches (discovery plus JWKS) by issuer and outcome (success, failure).",
		}, []string{"issuer", "outcome"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_token_key_refetches_rate_limited_total",
			Help: "Key refetches for an unknown kid that the rate limit refused, by issuer.",
		}, []string{"issuer"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authzd_token_cache_hits_total",
			Help: "Verifications answered from the verified-token cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "authzd_token_cache_misses_total",
			Help: "Verifications not found in the verified-token cache.",
		}),
	}
	c := &issuerCollector{
		v: v,
		age: prometheus.NewDesc("authzd_token_key_age_seconds",
			"Seconds since the issuer's keys were last fetched successfully; absent before the first success.",
			[]string{"issuer"}, nil),
		keys: prometheus.NewDesc("authzd_token_keys",
			"Usable signing keys held for the issuer.", []string{"issuer"}, nil),
		up: prometheus.NewDesc("authzd_token_issuer_up",
			"1 when the issuer's last key fetch succeeded, 0 during an outage or before the first answer.",
			[]string{"issuer"}, nil),
		cached: prometheus.NewDesc("authzd_token_cache_entries",
			"Verified tokens held in the cache.", nil, nil),
	}
	var errs []error
	for _, col := range []prometheus.Collector{m.verifications, m.fetches, m.limited, m.cacheHits, m.cacheMisses, c} {
		if err := reg.Register(col); err != nil {
			errs = append(errs, err)
		}
	}
	for _, iss := range v.order {
		m.fetches.WithLabelValues(iss.cfg.Issuer, "success")
		m.fetches.WithLabelValues(iss.cfg.Issuer, "failure")
		m.limited.WithLabelValues(iss.cfg.Issuer)
	}
	return m, errors.Join(errs...)
}

func (c *issuerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.age
	ch <- c.keys
	ch <- c.up
	ch <- c.cached
}

func (c *issuerCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, st := range c.v.Status() {
		if !st.LastFetch.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(st.LastFetch).Seconds(), st.Issuer)
		}
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(st.Keys), st.Issuer)
		up := 0.0
		if st.Ready && st.LastError == "" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, st.Issuer)
	}
	n := 0
	if c.v.cache != nil {
		n = c.v.cache.Len()
	}
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.GaugeValue, float64(n))
}

// observe counts one verification. The issuer label is only ever a
// configured issuer, so hostile tokens cannot grow its cardinality.
func (m *metrics) observe(iss *issuer, err *Error) {
	if m == nil {
		return
	}
	name := ""
	if iss != nil {
		name = iss.cfg.Issuer
	}
	switch {
	case err == nil:
		m.verifications.WithLabelValues(name, "ok", "").Inc()
	case err.Reason == ReasonIssuerUnavailable:
		m.verifications.WithLabelValues(name, "unavailable", string(err.Reason)).Inc()
	default:
		m.verifications.WithLabelValues(name, "refused", string(err.Reason)).Inc()
	}
}

func (m *metrics) fetched(iss *issuer, err error) {
	if m == nil {
		return
	}
	outcome := "success"
	if err != nil {
		outcome = "failure"
	}
	m.fetches.WithLabelValues(iss.cfg.Issuer, outcome).Inc()
}

func (m *metrics) refetchLimited(iss *issuer) {
	if m != nil {
		m.limited.WithLabelValues(iss.cfg.Issuer).Inc()
	}
}

func (m *metrics) cacheHit() {
	if m != nil {
		m.cacheHits.Inc()
	}
}

func (m *metrics) cacheMiss() {
	if m != nil {
		m.cacheMisses.Inc()
	}
}
