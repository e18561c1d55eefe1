package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRunPicksUpRotationWithoutClients(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	m, err := New(Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		CheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	rotated := p.serverCA.issue(t, leaf{cn: "authzd", dns: []string{"localhost"}, server: true})
	writeFile(t, f.key, rotated.keyPEM)
	writeFile(t, f.cert, rotated.certPEM)
	want := rotated.x509.SerialNumber.String()
	eventually(t, "Run installs the rotated certificate", func() error {
		if got := m.mat.Load().cert.Leaf.SerialNumber.String(); got != want {
			return fmt.Errorf("got serial %q, want %q", got, want)
		}
		return nil
	})
}

// FuzzAuthorize checks the allow-list rule on arbitrary certificate names:
// an exact match of the common name or a URI SAN, or a DNS SAN equal but for
// case, authorizes; nothing else does; and nothing panics.
func FuzzAuthorize(f *testing.F) {
	f.Add("superset", "superset.internal", "spiffe://example.org/sa/superset", "superset")
	f.Add("", "Billing.Internal", "", "billing.internal")
	f.Add("intruder", "", "spiffe://example.org/sa/x", "spiffe://example.org/sa/X")
	f.Add("Superset", "", "", "superset")
	f.Add("\u212a", "\u212a", "", "k")
	f.Fuzz(func(t *testing.T, cn, dns, uri, allowed string) {
		if allowed == "" {
			return
		}
		m := &Manager{
			opts:       Options{ClientCAFile: "ca.pem"},
			metrics:    must(newMetrics(nil)),
			allowed:    map[string]bool{allowed: true},
			dnsAllowed: map[string]bool{strings.ToLower(allowed): true},
		}
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
		if dns != "" {
			c.DNSNames = []string{dns}
		}
		if u, err := url.Parse(uri); err == nil && uri != "" {
			c.URIs = []*url.URL{u}
		}
		err := m.Authorize(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}})
		exact := cn == allowed || dns == allowed || len(c.URIs) == 1 && c.URIs[0].String() == allowed
		loose := exact || dns != "" && strings.EqualFold(dns, allowed) ||
			strings.ToLower(dns) == strings.ToLower(allowed) && dns != ""
		if exact && err != nil {
			t.Errorf("Authorize(cn %q, dns %q, uri %q) with %q allowed: got %v, want nil",
				cn, dns, uri, allowed, err)
		}
		if !loose && err == nil {
			t.Errorf("Authorize(cn %q, dns %q, uri %q) with %q allowed: got nil, want refusal",
				cn, dns, uri, allowed)
		}
		var na *NotAllowedError
		if err != nil && !errors.As(err, &na) {
			t.Errorf("got %T, want *NotAllowedError", err)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func BenchmarkAuthorize(b *testing.B) {
	p := newPKI(b)
	m := &Manager{
		opts:       Options{ClientCAFile: "ca.pem"},
		metrics:    must(newMetrics(nil)),
		allowed:    map[string]bool{"superset": true, "billing.internal": true},
		dnsAllowed: map[string]bool{"superset": true, "billing.internal": true},
	}
	cs := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{p.billing.x509}}}
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Authorize(cs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake measures a full mutual-TLS handshake against the
// gRPC configuration, allow-list check and reload check included.
func BenchmarkHandshake(b *testing.B) {
	p := newPKI(b)
	dir := b.TempDir()
	f := files{cert: dir + "/tls.crt", key: dir + "/tls.key", clientCA: dir + "/ca.crt"}
	writeFile(b, f.cert, p.server.certPEM)
	writeFile(b, f.key, p.server.keyPEM)
	writeFile(b, f.clientCA, p.clientCA.pem)
	m, err := New(Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		AllowedClients: []string{"superset"}})
	if err != nil {
		b.Fatal(err)
	}
	srvCfg := &tls.Config{MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m.maybeReload()
			return m.mat.Load().grpc, nil
		}}
	cliCfg := clientTLS(p.serverCA.pool(), p.superset)
	cliCfg.NextProtos = []string{"h2"}
	cliCfg.ClientSessionCache = nil
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	errc := make(chan error, 1)
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			s := tls.Server(conn, srvCfg)
			errc <- s.Handshake()
			s.Close()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		c, err := tls.Dial("tcp", lis.Addr().String(), cliCfg)
		if err != nil {
			b.Fatal(err)
		}
		// TLS 1.3: the server verifies the client after the client's
		// handshake is done; wait for it.
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
