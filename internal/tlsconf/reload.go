package tlsconf

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Kinds of material, as they appear in logs and metric labels.
const (
	kindCertificate = "certificate"
	kindClientCA    = "client_ca"
)

// material is one consistent set of TLS material with the configurations
// built from it. It is never modified once installed.
type material struct {
	cert      *tls.Certificate
	certHash  [32]byte
	clientCAs *x509.CertPool // nil without mutual TLS
	caHash    [32]byte

	http *tls.Config // for the HTTP listener
	grpc *tls.Config // for the gRPC listener, allow-list in the handshake
}

// install builds the configurations of mat and makes it current. Each
// material gets its own session ticket key, so a session established under
// an older certificate or client CA is never resumed under a newer one.
func (m *Manager) install(mat *material) error {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("tlsconf: session ticket key: %w", err)
	}
	build := func(protos []string) *tls.Config {
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*mat.cert},
			NextProtos:   protos,
		}
		if mat.clientCAs != nil {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = mat.clientCAs
		}
		c.SetSessionTicketKeys([][32]byte{key})
		return c
	}
	mat.http = build([]string{"h2", "http/1.1"})
	mat.grpc = build([]string{"h2"})
	if mat.clientCAs != nil {
		mat.grpc.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := m.Authorize(&cs); err != nil {
				m.refused("grpc", &cs, err)
				return err
			}
			return nil
		}
	}
	m.mat.Store(mat)
	return nil
}

// maybeReload checks the files if the check interval has passed since the
// last check. Only one caller checks; the others go on with the current
// material.
func (m *Manager) maybeReload() {
	now := m.sinceEpoch()
	last := m.lastCheck.Load()
	if now-last < int64(m.interval) || !m.lastCheck.CompareAndSwap(last, now) {
		return
	}
	_ = m.Reload()
}

// sinceEpoch is a monotonic clock reading in nanoseconds.
func (m *Manager) sinceEpoch() int64 { return int64(time.Since(m.epoch)) }

// Run checks the files every check interval until ctx ends, so that
// rotation is picked up, and the expiry metrics follow it, even when no
// client connects. Handshakes check on their own; Run is optional.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.lastCheck.Store(m.sinceEpoch())
			_ = m.Reload()
		}
	}
}

// Reload re-reads the certificate, key and client CA now and installs
// whatever changed and parses. A file that fails keeps the previous
// material in service; the failure is logged at ERROR once per distinct
// bad content and returned.
func (m *Manager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.mat.Load()
	next := *cur
	changed := false
	var errs []error

	certPEM, keyPEM, err := readKeyPair(m.opts.CertFile, m.opts.KeyFile)
	if err != nil {
		errs = append(errs, m.bad(kindCertificate, m.opts.CertFile, "read "+err.Error(), err))
	} else if h := pairHash(certPEM, keyPEM); h == cur.certHash {
		m.good(kindCertificate)
	} else if cert, err := parseKeyPair(m.opts.CertFile, m.opts.KeyFile, certPEM, keyPEM); err != nil {
		errs = append(errs, m.bad(kindCertificate, m.opts.CertFile, hex.EncodeToString(h[:]), err))
	} else {
		next.cert, next.certHash, changed = cert, h, true
		m.good(kindCertificate)
		m.metrics.observeCert(kindCertificate, cert.Leaf)
		m.metrics.reloads.WithLabelValues(kindCertificate, "success").Inc()
		m.log.Info("tls certificate reloaded", "file", m.opts.CertFile,
			"subject", cert.Leaf.Subject.String(), "serial", cert.Leaf.SerialNumber.String(),
			"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	if m.opts.ClientCAFile != "" {
		data, err := os.ReadFile(m.opts.ClientCAFile)
		if err != nil {
			errs = append(errs, m.bad(kindClientCA, m.opts.ClientCAFile, "read "+err.Error(),
				fmt.Errorf("tlsconf: read client CA %q: %w", m.opts.ClientCAFile, err)))
		} else if h := sha256.Sum256(data); h == cur.caHash {
			m.good(kindClientCA)
		} else if pool, first, err := parseCA(m.opts.ClientCAFile, data); err != nil {
			errs = append(errs, m.bad(kindClientCA, m.opts.ClientCAFile, hex.EncodeToString(h[:]), err))
		} else {
			next.clientCAs, next.caHash, changed = pool, h, true
			m.good(kindClientCA)
			m.metrics.observeCert(kindClientCA, first)
			m.metrics.reloads.WithLabelValues(kindClientCA, "success").Inc()
			m.log.Info("tls client CA reloaded", "file", m.opts.ClientCAFile,
				"subject", first.Subject.String(),
				"not_after", first.NotAfter.UTC().Format(time.RFC3339))
		}
	}

	if changed {
		if err := m.install(&next); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bad records a failed load of kind. It logs and counts the failure only
// when key, which identifies the bad content, differs from the last one
// logged, so a file that stays bad is reported once.
func (m *Manager) bad(kind, file, key string, err error) error {
	if m.badKey[kind] != key {
		m.badKey[kind] = key
		m.metrics.reloads.WithLabelValues(kind, "failure").Inc()
		m.log.Error("tls reload failed; keeping the previous material", "kind", kind,
			"file", file, "error", err.Error())
	}
	return err
}

// good forgets the last bad content of kind.
func (m *Manager) good(kind string) { delete(m.badKey, kind) }

func readKeyPair(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: read certificate %q: %w", certFile, err)
	}
	keyPEM, err = os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: read key %q: %w", keyFile, err)
	}
	return certPEM, keyPEM, nil
}

func pairHash(certPEM, keyPEM []byte) [32]byte {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func parseKeyPair(certFile, keyFile string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate %q and key %q: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tlsconf: certificate %q: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

func loadKeyPair(certFile, keyFile string) (*tls.Certificate, [32]byte, error) {
	certPEM, keyPEM, err := readKeyPair(certFile, keyFile)
	if err != nil {
		return nil, [32]byte{}, err
	}
	cert, err := parseKeyPair(certFile, keyFile, certPEM, keyPEM)
	if err != nil {
		return nil, [32]byte{}, err
	}
	return cert, pairHash(certPEM, keyPEM), nil
}

// parseCA parses every CERTIFICATE block of a PEM file into a pool and
// returns the one that expires first, for the expiry metric.
func parseCA(file string, data []byte) (*x509.CertPool, *x509.Certificate, error) {
	pool := x509.NewCertPool()
	var first *x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("tlsconf: client CA %q: %w", file, err)
		}
		pool.AddCert(c)
		if first == nil || c.NotAfter.Before(first.NotAfter) {
			first = c
		}
	}
	if first == nil {
		return nil, nil, fmt.Errorf("tlsconf: client CA %q: no PEM certificate found", file)
	}
	return pool, first, nil
}

func loadCA(file string) (*x509.CertPool, *x509.Certificate, [32]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, [32]byte{}, fmt.Errorf("tlsconf: read client CA %q: %w", file, err)
	}
	pool, first, err := parseCA(file, data)
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	return pool, first, sha256.Sum256(data), nil
}
