// Package tlsconf secures authzd's listeners with TLS and, optionally,
// mutual TLS restricted to an allow-list of client identities.
//
// A Manager holds the server certificate, its key and the client CA, and
// re-reads them when their content changes on disk, at most once per check
// interval, on the next handshake (or on every tick of Run). A file that
// cannot be read or parsed leaves the last good material in service and is
// logged at ERROR once per distinct bad content.
//
// Both listeners apply the same rule, Authorize: a client must present a
// certificate signed by the client CA, and, when an allow-list is set, one
// of its DNS SANs, URI SANs or its subject common name must be on the list.
// The gRPC listener enforces the allow-list in the TLS handshake itself
// (GRPCCredentials); the HTTP listener completes the handshake for any
// verified client and answers 403 to a client that is not on the list
// (RequireAllowed), so that the caller learns why.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCheckInterval is how often, at most, the files are checked for
// changes when Options.CheckInterval is zero.
const DefaultCheckInterval = time.Second

// Options configures a Manager.
type Options struct {
	// CertFile and KeyFile hold the server certificate chain and its
	// private key, PEM. Required.
	CertFile string
	KeyFile  string
	// ClientCAFile, when set, holds the PEM certificates of the CAs that
	// sign client certificates; clients must then present one (mutual TLS).
	ClientCAFile string
	// AllowedClients, when set, lists the client identities that may call:
	// a DNS SAN (compared without regard to case), a URI SAN or a subject
	// common name, matched exactly; no wildcards. Empty means any client
	// with a certificate signed by the client CA. Requires ClientCAFile.
	AllowedClients []string
	// Logger receives reload and refusal lines. Nil discards them.
	Logger *slog.Logger
	// Registerer, when set, receives the TLS metrics.
	Registerer prometheus.Registerer
	// CheckInterval bounds how often the files are checked for changes.
	// Default DefaultCheckInterval.
	CheckInterval time.Duration
}

// ErrNoClientCertificate is returned by Authorize when mutual TLS is
// configured and the connection carries no verified client certificate.
var ErrNoClientCertificate = errors.New("client certificate required")

// NotAllowedError is returned by Authorize for a verified client whose
// certificate names no identity on the allow-list.
type NotAllowedError struct {
	// Identity is the client's identity as Identity reports it.
	Identity string
}

// Error implements error.
func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("client certificate %q is not allowed", e.Identity)
}

// Manager serves the current TLS material and authorizes clients. It is
// safe for concurrent use. Create it with New.
type Manager struct {
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	interval time.Duration
	// allowed holds the allow-list; dnsAllowed the same entries lowercased,
	// for DNS SANs.
	allowed    map[string]bool
	dnsAllowed map[string]bool

	mat       atomic.Pointer[material]
	epoch     time.Time    // monotonic origin of lastCheck
	lastCheck atomic.Int64 // nanoseconds since epoch of the last file check

	mu     sync.Mutex        // serializes reloads
	badKey map[string]string // kind -> key of the bad content last logged
}

// New checks the options, loads the certificate, key and client CA, and
// returns a Manager. It fails if any file cannot be read or parsed.
func New(o Options) (*Manager, error) {
	var errs []error
	if o.CertFile == "" {
		errs = append(errs, errors.New("tlsconf: certificate file is required"))
	}
	if o.KeyFile == "" {
		errs = append(errs, errors.New("tlsconf: key file is required"))
	}
	allowed := make(map[string]bool, len(o.AllowedClients))
	dnsAllowed := make(map[string]bool, len(o.AllowedClients))
	for i, a := range o.AllowedClients {
		if strings.TrimSpace(a) == "" || strings.TrimSpace(a) != a {
			errs = append(errs, fmt.Errorf("tlsconf: allowed client %d %q is empty or has spaces", i, a))
			continue
		}
		allowed[a] = true
		dnsAllowed[strings.ToLower(a)] = true
	}
	if len(o.AllowedClients) > 0 && o.ClientCAFile == "" {
		errs = append(errs, errors.New("tlsconf: allowed clients need a client CA file"))
	}
	if o.CheckInterval < 0 {
		errs = append(errs, fmt.Errorf("tlsconf: check interval %q is negative", o.CheckInterval))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opts:       o,
		log:        log,
		interval:   o.CheckInterval,
		allowed:    allowed,
		dnsAllowed: dnsAllowed,
		badKey:     map[string]string{},
		epoch:      time.Now(),
	}
	met, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	m.metrics = met

	mat := &material{}
	cert, hash, err := loadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	mat.cert, mat.certHash = cert, hash
	m.metrics.observeCert(kindCertificate, cert.Leaf)
	if o.ClientCAFile != "" {
		pool, first, hash, err := loadCA(o.ClientCAFile)
		if err != nil {
			return nil, err
		}
		mat.clientCAs, mat.caHash = pool, hash
		m.metrics.observeCert(kindClientCA, first)
	}
	if err := m.install(mat); err != nil {
		return nil, err
	}
	m.lastCheck.Store(m.sinceEpoch())
	return m, nil
}

// MutualTLS reports whether clients must present a certificate.
func (m *Manager) MutualTLS() bool { return m.opts.ClientCAFile != "" }

// ServerTLS returns the TLS configuration of the HTTP listener: TLS 1.2 or
// later, the current certificate, and, with a client CA, a verified client
// certificate required. The allow-list is not applied in the handshake;
// wrap the handler with RequireAllowed. Each handshake sees the material
// current at that moment, so rotation needs no restart. The configuration
// offers ALPN "h2" and "http/1.1", as net/http's ServeTLS does.
func (m *Manager) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m.maybeReload()
			return m.mat.Load().http, nil
		},
	}
}

// Authorize applies the client rule to a connection. Without a client CA
// every connection is authorized. With one, the connection must carry a
// verified client certificate (else ErrNoClientCertificate), and when the
// allow-list is not empty, one of the certificate's DNS SANs, URI SANs or
// its subject common name must be on it (else a *NotAllowedError).
func (m *Manager) Authorize(state *tls.ConnectionState) error {
	if !m.MutualTLS() {
		return nil
	}
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return ErrNoClientCertificate
	}
	if len(m.allowed) == 0 {
		return nil
	}
	leaf := state.VerifiedChains[0][0]
	for _, d := range leaf.DNSNames {
		if m.dnsAllowed[strings.ToLower(d)] {
			return nil
		}
	}
	for _, u := range leaf.URIs {
		if m.allowed[u.String()] {
			return nil
		}
	}
	if cn := leaf.Subject.CommonName; cn != "" && m.allowed[cn] {
		return nil
	}
	return &NotAllowedError{Identity: certIdentity(leaf)}
}

// Identity names the client of a connection for logs and messages: the
// subject common name of its certificate, else its first DNS SAN, else its
// first URI SAN; "" without a client certificate.
func Identity(state *tls.ConnectionState) string {
	if state == nil {
		return ""
	}
	if len(state.VerifiedChains) > 0 && len(state.VerifiedChains[0]) > 0 {
		return certIdentity(state.VerifiedChains[0][0])
	}
	if len(state.PeerCertificates) > 0 {
		return certIdentity(state.PeerCertificates[0])
	}
	return ""
}

// Identity names the client of a connection; see the package function
// Identity.
func (m *Manager) Identity(state *tls.ConnectionState) string { return Identity(state) }

func certIdentity(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
}

// refused logs and counts a client refused on listener.
func (m *Manager) refused(listener string, state *tls.ConnectionState, err error) {
	m.metrics.refused.WithLabelValues(listener).Inc()
	m.log.Warn("client refused", "listener", listener, "client", Identity(state),
		"error", err.Error())
}
