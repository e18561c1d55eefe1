package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// pki is the certificates of one test: a server CA and server certificate,
// the client CA and its clients, and a stranger CA with a client.
type pki struct {
	serverCA, clientCA, otherCA *testCA
	server                      *issued
	superset, billing, spiffe   *issued
	unlisted, stranger          *issued
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{
		serverCA: newCA(t, "server CA"),
		clientCA: newCA(t, "client CA"),
		otherCA:  newCA(t, "other CA"),
	}
	p.server = p.serverCA.issue(t, leaf{cn: "authzd", dns: []string{"localhost"}, server: true})
	p.superset = p.clientCA.issue(t, leaf{cn: "superset"})
	p.billing = p.clientCA.issue(t, leaf{cn: "billing-7f9c", dns: []string{"Billing.Internal"}})
	p.spiffe = p.clientCA.issue(t, leaf{uris: []string{"spiffe://example.org/ns/bi/sa/reporter"}})
	p.unlisted = p.clientCA.issue(t, leaf{cn: "intruder", dns: []string{"intruder.internal"}})
	p.stranger = p.otherCA.issue(t, leaf{cn: "superset"})
	return p
}

// stack is a gRPC and an HTTP server over loopback secured by one Manager.
type stack struct {
	m        *Manager
	logs     *lockedBuffer
	reg      *prometheus.Registry
	grpcAddr string
	httpURL  string
	httpAddr string
}

func startStack(t *testing.T, o Options) *stack {
	t.Helper()
	s := &stack{logs: &lockedBuffer{}, reg: prometheus.NewRegistry()}
	o.Logger = slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Registerer = s.reg
	if o.CheckInterval == 0 {
		o.CheckInterval = 10 * time.Millisecond
	}
	m, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.m = m

	gs := grpc.NewServer(grpc.Creds(m.GRPCCredentials()))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	s.grpcAddr = gl.Addr().String()

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/decisions", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"client":%q}`, Identity(r.TLS))
	})
	hsrv := &http.Server{
		Handler:           m.RequireAllowed(mux),
		TLSConfig:         m.ServerTLS(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.New(slog.DiscardHandler).Handler(), slog.LevelDebug),
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = hsrv.ServeTLS(hl, "", "") }()
	t.Cleanup(func() { _ = hsrv.Close() })
	s.httpAddr = hl.Addr().String()
	s.httpURL = "https://" + s.httpAddr
	return s
}

func clientTLS(roots *x509.CertPool, cert *issued) *tls.Config {
	c := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.tls}
	}
	return c
}

// callGRPC makes one health check; it returns the status code and message.
func callGRPC(t *testing.T, addr string, cfg *tls.Config) (codes.Code, string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	st := status.Convert(err)
	return st.Code(), st.Message()
}

// callHTTP makes one REST request; it returns the status and body, or the
// transport error.
func callHTTP(t *testing.T, url string, cfg *tls.Config, h2 bool) (int, string, string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(url + "/v1/decisions")
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", "", err
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Proto, nil
}

func TestClientsOverLoopback(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	s := startStack(t, Options{
		CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		AllowedClients: []string{"superset", "billing.internal", "spiffe://example.org/ns/bi/sa/reporter"},
	})
	roots := p.serverCA.pool()

	tests := []struct {
		name     string
		cert     *issued
		wantGRPC codes.Code
		// wantHTTP is the status; 0 means the TLS handshake fails.
		wantHTTP int
		wantBody string
	}{
		{name: "no client certificate", wantGRPC: codes.Unavailable},
		{name: "certificate from another CA", cert: p.stranger, wantGRPC: codes.Unavailable},
		{name: "certificate not on the allow-list", cert: p.unlisted,
			wantGRPC: codes.Unavailable, wantHTTP: http.StatusForbidden,
			wantBody: `{"code":7,"message":"client certificate \"intruder\" is not allowed","details":[]}`},
		{name: "allowed by common name", cert: p.superset,
			wantGRPC: codes.OK, wantHTTP: http.StatusOK, wantBody: `{"client":"superset"}`},
		{name: "allowed by DNS SAN in another case", cert: p.billing,
			wantGRPC: codes.OK, wantHTTP: http.StatusOK, wantBody: `{"client":"billing-7f9c"}`},
		{name: "allowed by URI SAN", cert: p.spiffe, wantGRPC: codes.OK, wantHTTP: http.StatusOK,
			wantBody: `{"client":"spiffe://example.org/ns/bi/sa/reporter"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, msg := callGRPC(t, s.grpcAddr, clientTLS(roots, tt.cert)); got != tt.wantGRPC {
				t.Errorf("gRPC: got %v (%s), want %v", got, msg, tt.wantGRPC)
			}
			for _, h2 := range []bool{false, true} {
				code, body, proto, err := callHTTP(t, s.httpURL, clientTLS(roots, tt.cert), h2)
				if tt.wantHTTP == 0 {
					if err == nil {
						t.Errorf("REST (h2 %v): got status %d, want a failed handshake", h2, code)
					}
					continue
				}
				if err != nil {
					t.Fatalf("REST (h2 %v): %v", h2, err)
				}
				if code != tt.wantHTTP {
					t.Errorf("REST (h2 %v): got status %d, want %d", h2, code, tt.wantHTTP)
				}
				if diff := cmp.Diff(tt.wantBody, body); diff != "" {
					t.Errorf("REST (h2 %v) body (-want +got):\n%s", h2, diff)
				}
				if wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; proto != wantProto {
					t.Errorf("REST: got protocol %q, want %q", proto, wantProto)
				}
			}
		})
	}

	for _, listener := range []string{"grpc", "http"} {
		got := metricValue(t, s.m.metrics.refused.WithLabelValues(listener))
		if want := map[string]float64{"grpc": 1, "http": 2}[listener]; got != want {
			t.Errorf("refused on %s: got %v, want %v", listener, got, want)
		}
	}
	if got := s.logs.String(); !strings.Contains(got, `"client":"intruder"`) {
		t.Errorf("log has no refusal naming the client:\n%s", got)
	}
}

func TestEmptyAllowListAcceptsAnyVerifiedClient(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	s := startStack(t, Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA})
	roots := p.serverCA.pool()
	if got, msg := callGRPC(t, s.grpcAddr, clientTLS(roots, p.unlisted)); got != codes.OK {
		t.Errorf("gRPC: got %v (%s), want OK", got, msg)
	}
	if code, _, _, err := callHTTP(t, s.httpURL, clientTLS(roots, p.unlisted), false); err != nil ||
		code != http.StatusOK {
		t.Errorf("REST: got %d, %v, want 200", code, err)
	}
	if got, _ := callGRPC(t, s.grpcAddr, clientTLS(roots, p.stranger)); got != codes.Unavailable {
		t.Errorf("gRPC, other CA: got %v, want Unavailable", got)
	}
}

func TestTLSWithoutClientCertificates(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, nil)
	s := startStack(t, Options{CertFile: f.cert, KeyFile: f.key})
	roots := p.serverCA.pool()
	if got, msg := callGRPC(t, s.grpcAddr, clientTLS(roots, nil)); got != codes.OK {
		t.Errorf("gRPC: got %v (%s), want OK", got, msg)
	}
	code, body, _, err := callHTTP(t, s.httpURL, clientTLS(roots, nil), false)
	if err != nil || code != http.StatusOK {
		t.Fatalf("REST: got %d, %v, want 200", code, err)
	}
	if want := `{"client":""}`; body != want {
		t.Errorf("REST: got body %s, want %s", body, want)
	}
	// A client that does not trust the server CA refuses the server.
	if got, _ := callGRPC(t, s.grpcAddr, clientTLS(p.otherCA.pool(), nil)); got != codes.Unavailable {
		t.Errorf("gRPC, untrusted server: got %v, want Unavailable", got)
	}
}

// serverSerial handshakes with addr and returns the serial of the server
// certificate it presents.
func serverSerial(addr string, cfg *tls.Config, proto string) (string, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{proto}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func TestServerCertificateRotation(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	s := startStack(t, Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		AllowedClients: []string{"superset"}})
	cfg := clientTLS(p.serverCA.pool(), p.superset)
	listeners := []struct{ name, addr, proto string }{
		{"grpc", s.grpcAddr, "h2"}, {"http", s.httpAddr, "http/1.1"},
	}
	for _, l := range listeners {
		got, err := serverSerial(l.addr, cfg, l.proto)
		if err != nil || got != p.server.x509.SerialNumber.String() {
			t.Fatalf("%s before rotation: got serial %q, %v, want %q", l.name, got, err,
				p.server.x509.SerialNumber)
		}
	}

	rotated := p.serverCA.issue(t, leaf{cn: "authzd", dns: []string{"localhost"}, server: true})
	writeFile(t, f.key, rotated.keyPEM)
	writeFile(t, f.cert, rotated.certPEM)
	want := rotated.x509.SerialNumber.String()
	for _, l := range listeners {
		eventually(t, l.name+" serves the rotated certificate", func() error {
			got, err := serverSerial(l.addr, cfg, l.proto)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("got serial %q, want %q", got, want)
			}
			return nil
		})
	}
	if got, msg := callGRPC(t, s.grpcAddr, cfg); got != codes.OK {
		t.Errorf("gRPC after rotation: got %v (%s), want OK", got, msg)
	}
	if code, _, _, err := callHTTP(t, s.httpURL, cfg, true); err != nil || code != http.StatusOK {
		t.Errorf("REST after rotation: got %d, %v, want 200", code, err)
	}
	if got := metricValue(t, s.m.metrics.reloads.WithLabelValues(kindCertificate, "success")); got < 1 {
		t.Errorf("certificate reloads: got %v, want at least 1", got)
	}
}

func TestClientCARotation(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	s := startStack(t, Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		AllowedClients: []string{"superset"}})
	roots := p.serverCA.pool()
	newCA := newCA(t, "client CA 2")
	fresh := newCA.issue(t, leaf{cn: "superset"})

	if got, _ := callGRPC(t, s.grpcAddr, clientTLS(roots, fresh)); got != codes.Unavailable {
		t.Fatalf("gRPC, new CA before rotation: got %v, want Unavailable", got)
	}
	writeFile(t, f.clientCA, newCA.pem)
	eventually(t, "gRPC accepts the new CA's client", func() error {
		if got, msg := callGRPC(t, s.grpcAddr, clientTLS(roots, fresh)); got != codes.OK {
			return fmt.Errorf("got %v (%s)", got, msg)
		}
		return nil
	})
	eventually(t, "REST accepts the new CA's client", func() error {
		code, _, _, err := callHTTP(t, s.httpURL, clientTLS(roots, fresh), false)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("got status %d", code)
		}
		return nil
	})
	if got, _ := callGRPC(t, s.grpcAddr, clientTLS(roots, p.superset)); got != codes.Unavailable {
		t.Errorf("gRPC, old CA after rotation: got %v, want Unavailable", got)
	}
	if _, _, _, err := callHTTP(t, s.httpURL, clientTLS(roots, p.superset), false); err == nil {
		t.Errorf("REST, old CA after rotation: got a response, want a failed handshake")
	}
}

func TestBadFileKeepsLastGood(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	// A long interval: only the explicit Reload calls below check the files.
	s := startStack(t, Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		CheckInterval: time.Hour})
	cfg := clientTLS(p.serverCA.pool(), p.superset)
	before := p.server.x509.SerialNumber.String()

	writeFile(t, f.cert, []byte("not a certificate"))
	writeFile(t, f.clientCA, []byte("-----BEGIN NOTHING-----\n"))
	for i := range 3 {
		if err := s.m.Reload(); err == nil {
			t.Fatalf("Reload %d of bad files: got nil, want an error", i)
		}
	}
	if got, err := serverSerial(s.grpcAddr, cfg, "h2"); err != nil || got != before {
		t.Errorf("after bad files: got serial %q, %v, want the previous %q", got, err, before)
	}
	if got, msg := callGRPC(t, s.grpcAddr, cfg); got != codes.OK {
		t.Errorf("gRPC after bad files: got %v (%s), want OK", got, msg)
	}
	if got := strings.Count(s.logs.String(), `"level":"ERROR"`); got != 2 {
		t.Errorf("ERROR lines: got %d, want 2 (one per bad file)\n%s", got, s.logs.String())
	}
	for _, kind := range []string{kindCertificate, kindClientCA} {
		if got := metricValue(t, s.m.metrics.reloads.WithLabelValues(kind, "failure")); got != 1 {
			t.Errorf("%s failures: got %v, want 1", kind, got)
		}
	}

	rotated := p.serverCA.issue(t, leaf{cn: "authzd", dns: []string{"localhost"}, server: true})
	writeFile(t, f.key, rotated.keyPEM)
	writeFile(t, f.cert, rotated.certPEM)
	writeFile(t, f.clientCA, p.clientCA.pem)
	if err := s.m.Reload(); err != nil {
		t.Fatalf("Reload of good files: %v", err)
	}
	if got, err := serverSerial(s.grpcAddr, cfg, "h2"); err != nil ||
		got != rotated.x509.SerialNumber.String() {
		t.Errorf("after good files: got serial %q, %v, want %q", got, err, rotated.x509.SerialNumber)
	}
	if got := metricValue(t, s.m.metrics.notAfter.WithLabelValues(kindCertificate)); got !=
		float64(rotated.x509.NotAfter.Unix()) {
		t.Errorf("certificate expiry metric: got %v, want %v", got, rotated.x509.NotAfter.Unix())
	}
}

func TestPlaintextRefused(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	m, err := New(Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		AllowedClients: []string{"superset"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	gs := grpc.NewServer(grpc.Creds(m.GRPCCredentials()))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = gs.Serve(tcp) }()
	t.Cleanup(gs.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	plain, err := grpc.NewClient(tcp.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer plain.Close()
	_, err = healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("plaintext call over TCP: got %v, want Unavailable", got)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	dir := t.TempDir()
	garbage := dir + "/garbage.pem"
	writeFile(t, garbage, []byte("garbage"))
	otherKey := dir + "/other.key"
	writeFile(t, otherKey, p.superset.keyPEM)

	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error
	}{
		{name: "nothing", opts: Options{},
			want: []string{"certificate file is required", "key file is required"}},
		{name: "allow-list without client CA",
			opts: Options{CertFile: f.cert, KeyFile: f.key, AllowedClients: []string{"superset"}},
			want: []string{"allowed clients need a client CA file"}},
		{name: "blank allow-list entry",
			opts: Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
				AllowedClients: []string{"superset", " "}},
			want: []string{`allowed client 1 " " is empty or has spaces`}},
		{name: "missing certificate",
			opts: Options{CertFile: dir + "/missing.crt", KeyFile: f.key},
			want: []string{`read certificate "` + dir + `/missing.crt"`}},
		{name: "key of another certificate",
			opts: Options{CertFile: f.cert, KeyFile: otherKey},
			want: []string{`certificate "` + f.cert + `" and key "` + otherKey + `"`}},
		{name: "client CA without certificates",
			opts: Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: garbage},
			want: []string{`client CA "` + garbage + `": no PEM certificate found`}},
		{name: "negative interval",
			opts: Options{CertFile: f.cert, KeyFile: f.key, CheckInterval: -time.Second},
			want: []string{`check interval "-1s" is negative`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil {
				t.Fatalf("got nil error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	p := newPKI(t)
	f := newFiles(t, p.server, p.clientCA)
	m, err := New(Options{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA,
		AllowedClients: []string{"superset", "billing.internal",
			"spiffe://example.org/ns/bi/sa/reporter"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	verified := func(c *issued) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.x509},
			VerifiedChains: [][]*x509.Certificate{{c.x509, p.clientCA.cert}}}
	}
	tests := []struct {
		name         string
		state        *tls.ConnectionState
		wantErr      error
		wantIdentity string
	}{
		{name: "no connection state", wantErr: ErrNoClientCertificate},
		{name: "no certificate", state: &tls.ConnectionState{}, wantErr: ErrNoClientCertificate},
		{name: "unverified certificate",
			state:        &tls.ConnectionState{PeerCertificates: []*x509.Certificate{p.superset.x509}},
			wantErr:      ErrNoClientCertificate,
			wantIdentity: "superset"},
		{name: "common name", state: verified(p.superset), wantIdentity: "superset"},
		{name: "DNS SAN", state: verified(p.billing), wantIdentity: "billing-7f9c"},
		{name: "URI SAN", state: verified(p.spiffe),
			wantIdentity: "spiffe://example.org/ns/bi/sa/reporter"},
		{name: "not listed", state: verified(p.unlisted),
			wantErr: &NotAllowedError{Identity: "intruder"}, wantIdentity: "intruder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Authorize(tt.state)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil &&
				(err == nil || err.Error() != tt.wantErr.Error()) {
				t.Errorf("Authorize: got %v, want %v", err, tt.wantErr)
			}
			if got := m.Identity(tt.state); got != tt.wantIdentity {
				t.Errorf("Identity: got %q, want %q", got, tt.wantIdentity)
			}
		})
	}
	var na *NotAllowedError
	if err := m.Authorize(verified(p.unlisted)); !errors.As(err, &na) {
		t.Errorf("Authorize of an unlisted client: got %T, want *NotAllowedError", err)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
