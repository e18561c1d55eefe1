package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
)

// binary is the authzd binary built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "authzd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "authzd")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build authzd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// devServer is a running `authzd serve --dev` process.
type devServer struct {
	cmd      *exec.Cmd
	httpAddr string
	grpcAddr string
	stderr   *syncBuf
	stdout   *syncBuf
	done     chan error
}

func startDev(t *testing.T, extra ...string) *devServer {
	t.Helper()
	return startDevEnv(t, nil, extra...)
}

// startDevEnv is startDev with extra environment variables.
func startDevEnv(t *testing.T, env []string, extra ...string) *devServer {
	t.Helper()
	d := &devServer{httpAddr: freeAddr(t), grpcAddr: freeAddr(t),
		stderr: &syncBuf{}, stdout: &syncBuf{}, done: make(chan error, 1)}
	args := append([]string{"serve", "--dev", "--http-addr", d.httpAddr, "--grpc-addr", d.grpcAddr}, extra...)
	d.cmd = exec.Command(binary, args...)
	d.cmd.Dir = t.TempDir() // no ./policies here: the embedded copy serves
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr, d.cmd.Stdout = d.stderr, d.stdout
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + d.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dev server not ready in 30s; stderr:\n%s", d.stderr)
	return nil
}

// syncBuf collects a process's output while the test reads it.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestFirstDecisionFromTheCommandLine(t *testing.T) {
	d := startDev(t)
	server := "http://" + d.httpAddr
	tok, stderr, code := runCLI(t, "token", "--dev", "--server", server, "--sub", "alice",
		"--email", "alice@example.com", "--groups", "Data Engineers", "--claim", "department=Finance")
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr)
	}
	out, stderr, code := runCLI(t, "check", "--server", server, "--token", strings.TrimSpace(tok), "--explain")
	if code != 0 {
		t.Fatalf("check: exit %d: %s%s", code, out, stderr)
	}
	for _, want := range []string{"ALLOWED", "Alpha", "group 'Data Engineers' grants role Alpha",
		"department = 'Finance'", "sha256:", "matched policy data", `"department": "Finance"`} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// The shipped policy declares the claims it reads (input_paths): the
	// explanation shows those, not the email it never sees.
	if _, seen, _ := strings.Cut(out, "claims seen by the policy"); strings.Contains(seen, "alice@example.com") {
		t.Errorf("check --explain shows a claim the policy does not see:\n%s", out)
	}
	if !strings.Contains(d.stderr.String(), "NOT FOR PRODUCTION") {
		t.Error("dev mode does not say it is not for production")
	}
	if !strings.Contains(d.stderr.String(), "embedded") {
		t.Error("dev mode does not log that it serves the embedded policy")
	}

	// A person no mapping covers is denied, with a reason, and exit code 3.
	tok, _, _ = runCLI(t, "token", "--dev", "--server", server, "--sub", "mallory", "--groups", "Visitors")
	out, _, code = runCLI(t, "check", "--server", server, "--token", strings.TrimSpace(tok))
	if code != 3 || !strings.Contains(out, "DENIED") {
		t.Errorf("check of an unmapped person: exit %d, output:\n%s\nwant exit 3 and DENIED", code, out)
	}
	if strings.Contains(d.stdout.String()+d.stderr.String(), strings.TrimSpace(tok)) {
		t.Error("a raw token reached the server's logs")
	}
}

func TestDevRefusesNonLoopback(t *testing.T) {
	_, stderr, code := runCLI(t, "serve", "--dev", "--http-addr", "0.0.0.0:0")
	if code == 0 || !strings.Contains(stderr, "loopback") {
		t.Errorf("serve --dev on 0.0.0.0: exit %d, stderr %q; want a refusal naming loopback", code, stderr)
	}
}

func TestServeRefusesBadConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "authzd.yaml")
	if err := os.WriteFile(f, []byte("clock_skew: soon\nissuers: []\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, "serve", "--config", f)
	if code == 0 || !strings.Contains(stderr, f) || !strings.Contains(stderr, "bogus") {
		t.Errorf("exit %d, stderr %q; want a refusal naming the file and the key", code, stderr)
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	cmd := exec.Command(binary, "token", "--dev", "--server", "http://127.0.0.1:1")
	cmd.Env = append(os.Environ(), "AUTHZD_SUB=alice")
	out, _ := cmd.CombinedOutput()
	// With AUTHZD_SUB set, the command gets past flag checks and fails to
	// reach the (absent) server instead of asking for --sub.
	if strings.Contains(string(out), "--sub is required") || !strings.Contains(string(out), "reach authzd") {
		t.Errorf("AUTHZD_SUB did not set --sub: %s", out)
	}
}

// TestSIGTERMDrainsInFlight sends SIGTERM while REST and gRPC clients keep
// the server busy: every request the server accepted must complete, and the
// process must exit 0.
func TestSIGTERMDrainsInFlight(t *testing.T) {
	d := startDev(t)
	server := "http://" + d.httpAddr
	tok, stderr, code := runCLI(t, "token", "--dev", "--server", server, "--sub", "alice",
		"--groups", "Data Engineers")
	if code != 0 {
		t.Fatalf("token: %s", stderr)
	}
	body := []byte(`{"id_token":"` + strings.TrimSpace(tok) + `"}`)
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gc := authzv1.NewDecisionServiceClient(conn)

	var ok, refused atomic.Int64
	var mu sync.Mutex
	var dropped []string
	drop := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		dropped = append(dropped, s)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { // REST, one connection per request
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := hc.Post(server+"/v1/decisions", "application/json", bytes.NewReader(body))
				if err != nil {
					// Refused, or reset in the listen backlog before the
					// server accepted it: never in flight. A request the
					// server did handle and then dropped shows up below as
					// a decision logged OK that no client received.
					refused.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					drop(fmt.Sprintf("rest: status %d", resp.StatusCode))
					continue
				}
				ok.Add(1)
			}
		}()
		go func() { // gRPC on one shared connection
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := gc.Decide(ctx, &authzv1.DecideRequest{IdToken: strings.TrimSpace(tok)})
				cancel()
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.Unavailable:
					refused.Add(1) // not accepted: the server had stopped taking calls
				default:
					drop("grpc: " + err.Error())
				}
			}
		}()
	}
	// Let load build up, then ask the server to stop.
	deadline := time.Now().Add(20 * time.Second)
	for ok.Load() < 200 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	select {
	case exitErr = <-d.done:
		d.done <- exitErr // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit within 30s of SIGTERM")
	}
	close(stop)
	wg.Wait()
	if exitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0; stderr:\n%s", exitErr, d.stderr)
	}
	if len(dropped) > 0 {
		t.Errorf("%d requests dropped during drain, first: %s", len(dropped), dropped[0])
	}
	t.Logf("completed %d decisions, %d refused after shutdown began", ok.Load(), refused.Load())
	// Every decision the server made (one decision log line each) reached
	// its client: none was dropped after the server took it on.
	logged := int64(strings.Count(d.stdout.String(), `"code":"OK"`))
	if logged != ok.Load() {
		t.Errorf("server logged %d successful decisions, clients received %d", logged, ok.Load())
	}
	if !strings.Contains(d.stderr.String(), "draining") {
		t.Error("no drain logged")
	}
}

// copyTree copies the shipped policies into dir.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if strings.HasSuffix(p, ".go") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, raw, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getPolicy(t *testing.T, d *devServer) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + d.httpAddr + "/v1/policy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPolicyReloadInTheBinary edits the policy directory of a running
// server: a good change serves within two seconds, a broken one is refused
// and reported while the last good revision keeps serving, and SIGHUP
// reloads.
func TestPolicyReloadInTheBinary(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	copyTree(t, "../../policies", dir)
	d := startDev(t, "--policy-dir", dir)
	first := getPolicy(t, d)
	if first["source"] != dir {
		t.Errorf("source: got %v, want %q", first["source"], dir)
	}

	dataFile := filepath.Join(dir, "superset", "mappings", "data.json")
	raw, err := os.ReadFile(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	// A data change that stays valid JSON: rename the admin group.
	good := strings.Replace(string(raw), `"Superset Admins"`, `"Superset Administrators"`, 1)
	if err := os.WriteFile(dataFile, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var second map[string]any
	for time.Since(start) < 10*time.Second {
		second = getPolicy(t, d)
		if second["revision"] != first["revision"] {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if second["revision"] == first["revision"] {
		t.Fatal("revision did not change after a good edit")
	}
	t.Logf("good change served after %s", time.Since(start).Round(time.Millisecond))

	if err := os.WriteFile(filepath.Join(dir, "superset", "broken.rego"),
		[]byte("package superset.authz\n\nallow if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var third map[string]any
	for time.Now().Before(deadline) {
		third = getPolicy(t, d)
		if third["last_refused"] != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	refused, _ := third["last_refused"].(map[string]any)
	if refused == nil || !strings.Contains(fmt.Sprint(refused["error"]), "broken.rego") {
		t.Fatalf("last_refused: got %v, want an error naming broken.rego", third["last_refused"])
	}
	if third["revision"] != second["revision"] {
		t.Errorf("a broken change replaced the serving revision")
	}
	// Decisions keep flowing on the last good revision.
	tok, _, _ := runCLI(t, "token", "--dev", "--server", "http://"+d.httpAddr, "--sub", "a",
		"--groups", "Data Engineers")
	if out, _, code := runCLI(t, "check", "--server", "http://"+d.httpAddr, "--token",
		strings.TrimSpace(tok)); code != 0 {
		t.Errorf("decision during a refused change: exit %d\n%s", code, out)
	}

	// Fix the file, and SIGHUP loads it at once.
	if err := os.Remove(filepath.Join(dir, "superset", "broken.rego")); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(d.stderr.String(), "SIGHUP") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(d.stderr.String(), "SIGHUP") {
		t.Error("SIGHUP was not acted on")
	}
}

func TestDevModeReadsEnvironment(t *testing.T) {
	d := startDevEnv(t, []string{"AUTHZD_POLICY_DIALECT=sqlite"})
	server := "http://" + d.httpAddr
	tok, _, _ := runCLI(t, "token", "--dev", "--server", server, "--sub", "bob",
		"--groups", "Analytics Users", "--claim", "department=Sales")
	out, stderr, code := runCLI(t, "check", "--json", "--server", server, "--token", strings.TrimSpace(tok))
	if code != 0 {
		t.Fatalf("check: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, `"dialect": "sqlite"`) {
		t.Errorf("AUTHZD_POLICY_DIALECT=sqlite not applied in dev mode:\n%s", out)
	}
}
