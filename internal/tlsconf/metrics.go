package tlsconf

import (
	"crypto/x509"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the TLS metrics; registered only when a Registerer is given.
type metrics struct {
	reloads  *prometheus.CounterVec
	notAfter *prometheus.GaugeVec
	refused  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_tls_reloads_total",
			Help: "Reloads of TLS material from disk by kind (certificate, client_ca) " +
				"and outcome (success, failure); a file that stays bad counts once.",
		}, []string{"kind", "outcome"}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "authzd_tls_not_after_timestamp_seconds",
			Help: "Expiry, in Unix seconds, of the serving certificate and of the " +
				"client CA certificate that expires first, by kind.",
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authzd_tls_clients_refused_total",
			Help: "Clients refused by the client rule, in the gRPC handshake or with a REST 401/403 " +
				"(not on the allow-list, or no verified certificate), by listener (grpc, http).",
		}, []string{"listener"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.reloads, m.notAfter, m.refused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("tlsconf: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observeCert(kind string, c *x509.Certificate) {
	if c != nil {
		m.notAfter.WithLabelValues(kind).Set(float64(c.NotAfter.Unix()))
	}
}
