package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authzd/authzd/policies"
)

// opaCLI returns the OPA command line tool: from PATH, or the copy the
// Makefile installs into .tools/bin. The bundle tests need it to build real
// bundles, so its absence fails them loudly.
func opaCLI(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("opa"); err == nil {
		return p
	}
	p, err := filepath.Abs("../../.tools/bin/opa")
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("opa CLI not found in PATH nor at %q (install it with the Makefile's tools target): %v", p, err)
	return ""
}

// opaBuild runs opa build over dir with the extra arguments and returns the
// bundle.
func opaBuild(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	cmd := exec.Command(opaCLI(t), append([]string{"build", "-b", dir, "-o", out}, args...)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read bundle: %v", err)
	}
	return b
}

// roleBundle builds a bundle of rolePolicy(role), signed when key is a
// private key file.
func roleBundle(t *testing.T, role, key string) []byte {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "test", "authz.rego"), rolePolicy(role))
	args := []string{"--revision", role}
	if key != "" {
		args = append(args, "--signing-key", key, "--signing-alg", "RS256")
	}
	return opaBuild(t, dir, args...)
}

// bundleServer serves one bundle with ETag support, like a bundle server
// or an S3 bucket does, and records what it was asked.
type bundleServer struct {
	*httptest.Server

	mu          sync.Mutex
	body        []byte
	etag        string
	status      int    // when not 0, every request gets this status
	token       string // when set, the Authorization header it requires
	auths       []string
	served      int
	notModified int
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	t.Helper()
	s := &bundleServer{}
	s.set(body)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.Close)
	return s
}

// set replaces the served bundle.
func (s *bundleServer) set(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := sha256.Sum256(body)
	s.body, s.etag = body, `"`+hex.EncodeToString(sum[:8])+`"`
}

func (s *bundleServer) setStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

func (s *bundleServer) counts() (served, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served, s.notModified
}

// polls counts the answered requests for the bundle.
func (s *bundleServer) polls() int {
	served, notModified := s.counts()
	return served + notModified
}

func (s *bundleServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auths = append(s.auths, r.Header.Get("Authorization"))
	switch {
	case r.URL.Path != "/bundles/authz.tar.gz":
		http.NotFound(w, r)
		return
	case s.status != 0:
		w.WriteHeader(s.status)
		return
	case s.token != "" && r.Header.Get("Authorization") != s.token:
		w.WriteHeader(http.StatusUnauthorized)
		return
	case strings.Contains(r.Header.Get("If-None-Match"), s.etag):
		s.notModified++
		w.Header().Set("ETag", s.etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.served++
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.body)
}

func (s *bundleServer) bundleURL() string { return s.URL + "/bundles/authz.tar.gz" }

// fastPolling polls every second, the shortest the OPA downloader allows.
var fastPolling = BundlePolling{MinDelaySeconds: 1, MaxDelaySeconds: 1}

// newBundleEngine returns an engine over conf for package pkg, not yet
// watching.
func newBundleEngine(t *testing.T, conf BundleConf, pkg string) (*Engine, *prometheus.Registry, *logBuffer) {
	t.Helper()
	logger, logs := newLogger()
	reg := prometheus.NewRegistry()
	e, err := New(Options{Bundle: &conf, Package: pkg, Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e, reg, logs
}

// rsaKeyFiles writes a new RSA key pair as PEM files and returns their
// paths.
func rsaKeyFiles(t *testing.T) (private, public string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	dir := t.TempDir()
	private, public = filepath.Join(dir, "key.pem"), filepath.Join(dir, "public.pem")
	writeFile(t, private, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})))
	writeFile(t, public, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	return private, public
}

// tamper rewrites every .rego file of a bundle so that it grants role,
// keeping the bundle's signatures as they were.
func tamper(t testing.TB, b []byte, role string) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(zr)
	changed := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("tamper: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("tamper: %v", err)
		}
		if strings.HasSuffix(h.Name, ".rego") {
			data, changed = []byte(rolePolicy(role)), true
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tamper: %v", err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatalf("tamper: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if !changed {
		t.Fatal("tamper: the bundle has no .rego file")
	}
	return out.Bytes()
}

// TestBundleShippedPolicy loads the shipped policies as a bundle built by
// opa build and checks that every shipped case decides as the directory
// does, that the server's ETag is honored, and what Info says.
func TestBundleShippedPolicy(t *testing.T) {
	t.Parallel()
	srv := newBundleServer(t, opaBuild(t, "../../policies", "--revision", "v1"))
	e, _, _ := newBundleEngine(t, BundleConf{URL: srv.bundleURL() + "?token=secret", Polling: fastPolling}, "")

	if e.Loaded() {
		t.Fatal("Loaded before Watch: got true, want false")
	}
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "waiting for the first policy bundle") {
		t.Errorf("Ready before the first bundle: got %v, want waiting for the first policy bundle", err)
	}
	if _, err := e.Evaluate(context.Background(), Input{}, false); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Evaluate before the first bundle: got %v, want ErrNotLoaded", err)
	}
	if err := e.Reload(); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("Reload before the first bundle: got %v, want ErrNotLoaded", err)
	}

	startWatch(t, e)
	waitFor(t, "first bundle loaded", e.Loaded)
	if err := e.Ready(); err != nil {
		t.Errorf("Ready: got %v, want nil", err)
	}

	info := e.Info()
	if got, want := info.Source, srv.bundleURL(); got != want {
		t.Errorf("Info.Source: got %q, want %q (without the query)", got, want)
	}
	if got, want := info.BundleRevision, "v1"; got != want {
		t.Errorf("Info.BundleRevision: got %q, want %q", got, want)
	}
	if !strings.HasPrefix(info.Revision, "sha256:") {
		t.Errorf("Info.Revision: got %q, want a sha256: content hash", info.Revision)
	}
	for _, f := range info.Files {
		if strings.HasSuffix(f, "_test.rego") {
			t.Errorf("Info.Files: got test file %q, want none", f)
		}
	}

	dir, err := New(Options{Dir: "../../policies"})
	if err != nil {
		t.Fatalf("New(directory): %v", err)
	}
	for _, c := range readCases(t, "shipped/*.json") {
		t.Run(c.Name, func(t *testing.T) {
			want, wantErr := dir.Evaluate(context.Background(), c.Input, c.Explain)
			got, err := e.Evaluate(context.Background(), c.Input, c.Explain)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("Evaluate: got error %v, want %v", err, wantErr)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(Result{}, "Revision", "Seen")); diff != "" {
				t.Errorf("bundle decision differs from the directory's (-directory +bundle):\n%s", diff)
			}
		})
	}

	waitFor(t, "a poll answered 304 Not Modified", func() bool {
		_, nm := srv.counts()
		return nm > 0
	})
	if served, _ := srv.counts(); served != 1 {
		t.Errorf("bundle downloads: got %d, want 1 (the ETag makes later polls 304)", served)
	}
}

// TestBundleChange serves a new bundle and waits for it to serve.
func TestBundleChange(t *testing.T) {
	t.Parallel()
	srv := newBundleServer(t, roleBundle(t, "a", ""))
	e, reg, _ := newBundleEngine(t, BundleConf{URL: srv.bundleURL(), Polling: fastPolling}, "test.authz")
	startWatch(t, e)
	waitFor(t, "first bundle loaded", e.Loaded)
	first := e.Revision()
	if got := decidedRole(t, e); got != "a" {
		t.Fatalf("role: got %q, want %q", got, "a")
	}

	srv.set(roleBundle(t, "b", ""))
	waitFor(t, "changed bundle serving", func() bool { return e.Revision() != first })
	if got := decidedRole(t, e); got != "b" {
		t.Errorf("role: got %q, want %q", got, "b")
	}
	if got, want := e.Info().BundleRevision, "b"; got != want {
		t.Errorf("Info.BundleRevision: got %q, want %q", got, want)
	}
	if got := reloads(reg, "success"); got != 2 {
		t.Errorf("successful reloads: got %v, want 2", got)
	}
	if diff := cmp.Diff(map[string]float64{e.Revision(): 1}, revisionSeries(reg)); diff != "" {
		t.Errorf("authzd_policy_revision_info (-want +got):\n%s", diff)
	}
	if err := e.Reload(); err != nil {
		t.Errorf("Reload of the serving bundle: %v", err)
	}
}

// TestBundleSigned checks that a signed bundle is verified and served, and
// that a bundle which is tampered, unsigned, signed by another key, or
// that does not compile is refused while the last good keeps serving.
func TestBundleSigned(t *testing.T) {
	t.Parallel()
	key, pub := rsaKeyFiles(t)
	otherKey, _ := rsaKeyFiles(t)
	good := roleBundle(t, "a", key)

	noAllow := t.TempDir()
	writeFile(t, filepath.Join(noAllow, "test", "authz.rego"), "package test.authz\n\nroles contains \"x\"\n")

	tests := []struct {
		name    string
		bundle  []byte
		wantErr string
	}{
		{name: "tampered", bundle: tamper(t, good, "evil"), wantErr: "digest mismatch"},
		{name: "unsigned", bundle: roleBundle(t, "evil", ""), wantErr: ".signatures.json"},
		{name: "other key", bundle: roleBundle(t, "evil", otherKey), wantErr: "verification error"},
		{name: "no allow rule", bundle: opaBuild(t, noAllow, "--signing-key", key), wantErr: `no rule "allow"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newBundleServer(t, good)
			e, reg, logs := newBundleEngine(t, BundleConf{
				URL:     srv.bundleURL(),
				Polling: fastPolling,
				Signing: &BundleSigning{PublicKeyFile: pub},
			}, "test.authz")
			startWatch(t, e)
			waitFor(t, "signed bundle loaded", e.Loaded)
			rev := e.Revision()

			srv.set(tt.bundle)
			waitFor(t, "bundle refused", func() bool { return reloads(reg, "failure") == 1 })
			if got := decidedRole(t, e); got != "a" {
				t.Errorf("role after the refusal: got %q, want %q", got, "a")
			}
			info := e.Info()
			if info.Revision != rev {
				t.Errorf("revision after the refusal: got %q, want %q", info.Revision, rev)
			}
			if !strings.Contains(info.LastError, tt.wantErr) {
				t.Errorf("Info.LastError: got %q, want one containing %q", info.LastError, tt.wantErr)
			}
			// The next poll gets the refused bundle again (a bundle that
			// did not verify) or 304 (one that verified but did not
			// compile); either way it is neither counted nor logged twice.
			before := srv.polls()
			waitFor(t, "another poll", func() bool { return srv.polls() > before })
			if got := reloads(reg, "failure"); got != 1 {
				t.Errorf("failed reloads after the next poll: got %v, want 1", got)
			}
			if got := len(logs.records(t, "ERROR")); got != 1 {
				t.Errorf("ERROR log lines: got %d, want 1", got)
			}
			if err := e.Ready(); err != nil {
				t.Errorf("Ready after a refusal: got %v, want nil", err)
			}
		})
	}
}

// TestBundleServerDown checks that a bundle server going away changes
// nothing but a WARN, and that the engine starts, not ready, while its
// server fails, and becomes ready when the server answers.
func TestBundleServerDown(t *testing.T) {
	t.Parallel()
	t.Run("after the first bundle", func(t *testing.T) {
		t.Parallel()
		srv := newBundleServer(t, roleBundle(t, "a", ""))
		// A query may carry a credential, such as a presigned URL's.
		e, reg, logs := newBundleEngine(t, BundleConf{
			URL: srv.bundleURL() + "?X-Amz-Signature=s3cret", Polling: fastPolling,
		}, "test.authz")
		startWatch(t, e)
		waitFor(t, "first bundle loaded", e.Loaded)
		rev := e.Revision()

		srv.Close()
		waitFor(t, "server unavailable seen", func() bool { return e.Info().BundleError != "" })
		if got := decidedRole(t, e); got != "a" {
			t.Errorf("role with the server down: got %q, want %q", got, "a")
		}
		if got := e.Revision(); got != rev {
			t.Errorf("revision with the server down: got %q, want %q", got, rev)
		}
		if got := reloads(reg, "failure"); got != 0 {
			t.Errorf("failed reloads: got %v, want 0", got)
		}
		if err := e.Ready(); err != nil {
			t.Errorf("Ready with the server down: got %v, want nil", err)
		}
		if got := len(logs.records(t, "WARN")); got == 0 {
			t.Error("WARN log lines: got none, want one about the server")
		}
		if got := len(logs.records(t, "ERROR")); got != 0 {
			t.Errorf("ERROR log lines: got %d, want 0", got)
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		if strings.Contains(logs.buf.String(), "s3cret") || strings.Contains(e.Info().BundleError, "s3cret") {
			t.Errorf("log or Info.BundleError: got the URL's query, want it left out; Info.BundleError %q",
				e.Info().BundleError)
		}
	})
	t.Run("before the first bundle", func(t *testing.T) {
		t.Parallel()
		srv := newBundleServer(t, roleBundle(t, "a", ""))
		srv.setStatus(http.StatusServiceUnavailable)
		e, _, _ := newBundleEngine(t, BundleConf{URL: srv.bundleURL(), Polling: fastPolling}, "test.authz")
		startWatch(t, e)
		waitFor(t, "server unavailable seen", func() bool { return e.Info().BundleError != "" })
		err := e.Ready()
		if err == nil || !strings.Contains(err.Error(), "Service Unavailable") {
			t.Errorf("Ready: got %v, want an error naming the server's answer", err)
		}
		srv.setStatus(0)
		waitFor(t, "first bundle loaded", e.Loaded)
		if got := decidedRole(t, e); got != "a" {
			t.Errorf("role: got %q, want %q", got, "a")
		}
	})
}

// TestBundleBearer checks that the bearer token is read from its file at
// every request, so that a rotated token is sent, and never logged.
func TestBundleBearer(t *testing.T) {
	t.Parallel()
	srv := newBundleServer(t, roleBundle(t, "a", ""))
	srv.token = "Token s3cret-one"
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "s3cret-one\n")
	e, _, logs := newBundleEngine(t, BundleConf{
		URL:         srv.bundleURL(),
		Polling:     fastPolling,
		Credentials: BundleCredentials{Bearer: &BundleBearer{TokenFile: tokenFile, Scheme: "Token"}},
	}, "test.authz")
	startWatch(t, e)
	waitFor(t, "first bundle loaded", e.Loaded)

	srv.mu.Lock()
	srv.token = "Token s3cret-two"
	srv.mu.Unlock()
	writeFile(t, tokenFile, "s3cret-two")
	srv.set(roleBundle(t, "b", ""))
	waitFor(t, "bundle fetched with the rotated token", func() bool { return e.Info().BundleRevision == "b" })

	logs.mu.Lock()
	defer logs.mu.Unlock()
	if strings.Contains(logs.buf.String(), "s3cret") {
		t.Error("log: got the bearer token, want it never logged")
	}
}

// TestBundleS3Signing checks that requests are signed with AWS Signature
// Version 4 from environment credentials. It sets environment variables,
// so it does not run in parallel.
func TestBundleS3Signing(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
	t.Setenv("AWS_REGION", "eu-west-1")
	srv := newBundleServer(t, roleBundle(t, "a", ""))
	e, _, _ := newBundleEngine(t, BundleConf{
		URL:         srv.bundleURL(),
		Polling:     fastPolling,
		Credentials: BundleCredentials{S3Signing: &BundleS3Signing{EnvironmentCredentials: true}},
	}, "test.authz")
	startWatch(t, e)
	waitFor(t, "first bundle loaded", e.Loaded)
	srv.mu.Lock()
	auth := srv.auths[0]
	srv.mu.Unlock()
	if want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"; !strings.HasPrefix(auth, want) ||
		!strings.Contains(auth, "/eu-west-1/s3/aws4_request") {
		t.Errorf("Authorization: got %q, want a SigV4 signature for eu-west-1 s3 starting %q", auth, want)
	}
}

func TestBundleConfValidate(t *testing.T) {
	tests := []struct {
		name string
		conf BundleConf
		want []string // substrings of the error; none for a valid conf
	}{
		{name: "minimal", conf: BundleConf{URL: "https://b.example.com/authz.tar.gz"}},
		{
			name: "everything",
			conf: BundleConf{
				URL:         "https://b.example.com/authz.tar.gz",
				Polling:     BundlePolling{MinDelaySeconds: 5, MaxDelaySeconds: 10, LongPollingTimeoutSeconds: 60},
				Credentials: BundleCredentials{Bearer: &BundleBearer{TokenFile: "/t"}},
				Signing:     &BundleSigning{PublicKeyFile: "/k", Algorithm: "ES256", Scope: "write"},
			},
		},
		{name: "no url", conf: BundleConf{}, want: []string{"url: required"}},
		{name: "bad url", conf: BundleConf{URL: "ftp://x/b"}, want: []string{`url: "ftp://x/b" is not an http(s) URL`}},
		{
			name: "password in url",
			conf: BundleConf{URL: "https://u:p@b.example.com/b.tar.gz"},
			want: []string{"url: credentials in the URL are not allowed"},
		},
		{
			name: "every problem at once",
			conf: BundleConf{
				URL:     "https://b.example.com/b.tar.gz",
				Polling: BundlePolling{MinDelaySeconds: 10, MaxDelaySeconds: 5, LongPollingTimeoutSeconds: -1},
				Credentials: BundleCredentials{
					Bearer:    &BundleBearer{},
					S3Signing: &BundleS3Signing{MetadataCredentials: true, SignatureVersion: "2"},
				},
				Signing: &BundleSigning{Algorithm: "none"},
			},
			want: []string{
				"polling: min_delay_seconds 10 and max_delay_seconds 5",
				"polling.long_polling_timeout_seconds: -1 is negative",
				"credentials: set bearer or s3_signing, not both",
				"credentials.bearer.token_file: required",
				"credentials.s3_signing.aws_region: required with metadata_credentials",
				`credentials.s3_signing.signature_version: "2"`,
				"signing.public_key_file: required",
				`signing.algorithm: "none" is not supported`,
			},
		},
		{
			name: "s3 without a source",
			conf: BundleConf{URL: "https://b.example.com/b", Credentials: BundleCredentials{S3Signing: &BundleS3Signing{}}},
			want: []string{"credentials.s3_signing: switch on"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.conf.SetDefaults()
			err := tt.conf.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestBundleNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		conf BundleConf
		want string
	}{
		{name: "invalid", conf: BundleConf{}, want: "url: required"},
		{
			name: "missing key file",
			conf: BundleConf{URL: "http://127.0.0.1:1/b", Signing: &BundleSigning{PublicKeyFile: "/nonexistent/key.pem"}},
			want: "signing.public_key_file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Bundle: &tt.conf})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestBundleDataInsidePackage checks that bundle data mounted inside the
// decision package is refused, as for a directory.
func TestBundleDataInsidePackage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "test", "authz.rego"), rolePolicy("a"))
	writeFile(t, filepath.Join(dir, "test", "authz", "extra", "data.json"), `{"x": 1}`)
	srv := newBundleServer(t, opaBuild(t, dir))
	e, reg, _ := newBundleEngine(t, BundleConf{URL: srv.bundleURL(), Polling: fastPolling}, "test.authz")
	startWatch(t, e)
	waitFor(t, "bundle refused", func() bool { return reloads(reg, "failure") == 1 })
	if e.Loaded() {
		t.Error("Loaded: got true, want false")
	}
	if err := e.Ready(); err == nil || !strings.Contains(err.Error(), "inside package") {
		t.Errorf("Ready: got %v, want the refusal", err)
	}
}

// readBundle reads a bundle tarball the way the downloader does.
func readBundle(raw []byte) (*bundle.Bundle, error) {
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "bundle")).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithSizeLimitBytes(maxFileSize).
		Read()
	return &b, err
}

// FuzzBundle feeds arbitrary bytes as a downloaded bundle, unsigned: the
// engine must activate it or refuse it with an error, never panic, and an
// activated bundle must evaluate an empty input.
func FuzzBundle(f *testing.F) {
	f.Add(opaBuild(f, "../../policies"))
	f.Add(tamper(f, opaBuild(f, "../../policies"), "x"))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte("not a bundle"))
	e, err := New(Options{FS: policies.FS})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := readBundle(raw)
		if err != nil {
			return
		}
		snap, err := bundleSnapshot(b, e.pkg)
		if err != nil {
			return
		}
		rev, err := e.build(snap)
		if err != nil {
			return
		}
		if _, err := e.eval(context.Background(), rev, Input{}, false); err != nil {
			t.Errorf("evaluate an activated bundle: %v", err)
		}
	})
}

// BenchmarkBundleActivate measures what a replica does with a new bundle
// of the shipped policy: read the tarball, hash its serving files, compile,
// prepare and smoke-evaluate.
func BenchmarkBundleActivate(b *testing.B) {
	raw := opaBuild(b, "../../policies")
	e, err := New(Options{FS: policies.FS})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		bb, err := readBundle(raw)
		if err != nil {
			b.Fatal(err)
		}
		snap, err := bundleSnapshot(bb, e.pkg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.build(snap); err != nil {
			b.Fatal(err)
		}
	}
}
