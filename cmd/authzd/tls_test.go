package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
)

// testCA issues certificates for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "authzd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn, a server one when server.
func (ca *testCA) issue(t *testing.T, cn string, server bool) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{cn}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TestMutualTLSOnBothListeners runs a server with a configuration file,
// trusting a dev server as its identity provider, with mutual TLS and an
// allow-list: the allowed client gets decisions over REST and gRPC, a
// client off the list and a client without a certificate get none.
func TestMutualTLSOnBothListeners(t *testing.T) {
	idp := startDev(t)
	dir := t.TempDir()
	ca := newTestCA(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey := ca.issue(t, "authzd", true)
	write("ca.pem", ca.pem)
	write("server.pem", srvCert)
	write("server-key.pem", srvKey)
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`grpc_addr: %s
http_addr: %s
policy:
  dir: %s
issuers:
  - issuer: http://%s/dev
    audiences: [superset]
tls:
  cert_file: %s
  key_file: %s
  client_ca_file: %s
  allowed_clients: [superset.example.com]
`, grpcAddr, httpAddr, mustAbs(t, "../../policies"), idp.httpAddr,
		filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "ca.pem"))
	cfgFile := write("authzd.yaml", []byte(cfg))

	stderr := &syncBuf{}
	cmd := exec.Command(binary, "serve", "--config", cfgFile)
	cmd.Stderr, cmd.Stdout = stderr, &syncBuf{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	clientTLS := func(cn string) *tls.Config {
		c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if cn != "" {
			certPEM, keyPEM := ca.issue(t, cn, false)
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			c.Certificates = []tls.Certificate{pair}
		}
		return c
	}
	allowed := clientTLS("superset.example.com")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: allowed}}

	// Wait until the server answers over TLS and has the IdP's keys.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("https://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS server not ready: %v\n%s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	tok, errOut, code := runCLI(t, "token", "--dev", "--server", "http://"+idp.httpAddr, "--sub", "alice",
		"--groups", "Data Engineers")
	if code != 0 {
		t.Fatalf("token: %s", errOut)
	}
	tok = strings.TrimSpace(tok)
	body := `{"id_token":"` + tok + `"}`

	post := func(c *tls.Config) (int, error) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
		resp, err := client.Post("https://"+httpAddr+"/v1/decisions", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	decide := func(c *tls.Config) error {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(c)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = authzv1.NewDecisionServiceClient(conn).Decide(ctx, &authzv1.DecideRequest{IdToken: tok})
		return err
	}

	if code, err := post(allowed); err != nil || code != http.StatusOK {
		t.Errorf("REST with an allowed client certificate: got %d, %v; want 200", code, err)
	}
	if err := decide(allowed); err != nil {
		t.Errorf("gRPC with an allowed client certificate: %v", err)
	}
	intruder := clientTLS("intruder.example.com")
	if code, err := post(intruder); err != nil || code != http.StatusForbidden {
		t.Errorf("REST with a client off the allow-list: got %d, %v; want 403", code, err)
	}
	if err := decide(intruder); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC with a client off the allow-list: got %v, want UNAVAILABLE (handshake refused)", err)
	}
	anonymous := clientTLS("")
	if _, err := post(anonymous); err == nil {
		t.Error("REST without a client certificate was served")
	}
	if err := decide(anonymous); err == nil {
		t.Error("gRPC without a client certificate was served")
	}
	if strings.Contains(stderr.String(), "TLS is off") {
		t.Error("a TLS server logs that TLS is off")
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
