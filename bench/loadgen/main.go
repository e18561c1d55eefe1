// Command loadgen drives one decision server with a fixed number of
// concurrent connections and reports throughput, latency percentiles, the
// server's CPU time per 1,000 decisions and its peak resident memory. The
// same generator drives authzd over REST and gRPC and OPA's REST server, so
// that the side-by-side numbers differ only by the server.
//
//	loadgen run -kind rest|grpc|opa -addr HOST:PORT -tokens FILE -c 32 \
//	    -duration 10s -pid PID -label NAME -set distinct >> results.jsonl
//	loadgen report results.jsonl
//
// Every request carries the next token of the file (a shared counter), so
// with a file larger than the servers' caches every request is a token the
// server has not seen recently. Each worker holds one connection: HTTP/1.1
// keep-alive, or its own gRPC channel.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authzv1 "github.com/authzd/authzd/gen/authz/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen run|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Result is one measured cell of the table, written as one JSON line.
type Result struct {
	Label string `json:"label"`
	Kind  string `json:"kind"`
	// Series names the server's configuration for the ratio tables:
	// the kind, or a variant of it such as grpc-unshared.
	Series      string  `json:"series,omitempty"`
	Set         string  `json:"set"`
	Concurrency int     `json:"concurrency"`
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50Micros   float64 `json:"p50_us"`
	P99Micros   float64 `json:"p99_us"`
	MaxMicros   float64 `json:"max_us"`
	// CPUPer1000 is the server's user+system CPU seconds per 1,000
	// decisions, from /proc/PID/stat; 0 without -pid.
	CPUPer1000 float64 `json:"cpu_s_per_1000"`
	// PeakRSSMiB is the server's VmHWM at the end of the run.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// RSSSamplesMiB are VmRSS samples taken every -rss-every, when set.
	RSSSamplesMiB []float64 `json:"rss_samples_mib,omitempty"`
}

type caller interface {
	call(ctx context.Context, tok string) error
	close()
}

func runCmd(args []string) error {
	// The load generator shares the machine's CPUs with the server it
	// measures; collecting its small heap less often leaves more of them
	// to the server, as a C load generator such as wrk would.
	debug.SetGCPercent(800)
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	kind := fs.String("kind", "rest", "rest (authzd), grpc (authzd) or opa (OPA REST)")
	addr := fs.String("addr", "", "server address host:port")
	opaPath := fs.String("opa-path", "/v1/data/bench/authz/decision", "OPA data API path of the decision")
	tokensFile := fs.String("tokens", "", "file of tokens, one per line")
	conc := fs.Int("c", 8, "concurrent connections")
	duration := fs.Duration("duration", 10*time.Second, "how long to run (when -requests is 0)")
	requests := fs.Uint64("requests", 0, "stop after this many requests instead of a duration")
	pid := fs.Int("pid", 0, "server process id, for CPU time and peak RSS")
	label := fs.String("label", "", "row label; default the kind")
	series := fs.String("series", "", "server configuration for the ratio tables; default the kind")
	set := fs.String("set", "distinct", "name of the token set, for the table")
	rssEvery := fs.Duration("rss-every", 0, "sample the server's RSS this often (0: never)")
	_ = fs.Parse(args)
	if *addr == "" || *tokensFile == "" {
		return errors.New("run: -addr and -tokens are required")
	}
	if *label == "" {
		*label = *kind
	}
	if *series == "" {
		*series = *kind
	}
	tokens, err := readTokens(*tokensFile)
	if err != nil {
		return err
	}

	callers := make([]caller, *conc)
	for i := range callers {
		c, err := newCaller(*kind, *addr, *opaPath)
		if err != nil {
			return err
		}
		defer c.close()
		callers[i] = c
	}

	var (
		next     atomic.Uint64
		errCount atomic.Uint64
		firstErr atomic.Pointer[string]
		hists    = make([]*histogram, *conc)
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *requests == 0 {
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	var samples []float64
	began := time.Now()
	sampleDone := make(chan struct{})
	if *rssEvery > 0 && *pid > 0 {
		go func() {
			defer close(sampleDone)
			t := time.NewTicker(*rssEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if v, err := procStatusKiB(*pid, "VmRSS"); err == nil {
						samples = append(samples, float64(v)/1024)
						if len(samples)%10 == 0 {
							// Progress, so that a long soak leaves a trace
							// even when it is cut short.
							fmt.Fprintf(os.Stderr, "loadgen: %s %d decisions, RSS %.1f MiB\n",
								time.Since(began).Round(time.Second), next.Load(), float64(v)/1024)
						}
					}
				}
			}
		}()
	} else {
		close(sampleDone)
	}

	cpu0, _ := procCPUSeconds(*pid)
	start := time.Now()
	for w := range *conc {
		h := newHistogram()
		hists[w] = h
		wg.Go(func() {
			c := callers[w]
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if *requests > 0 && i >= *requests {
					cancel()
					return
				}
				t0 := time.Now()
				err := c.call(context.Background(), tokens[i%uint64(len(tokens))])
				h.record(time.Since(t0))
				if err != nil {
					if errCount.Add(1) == 1 {
						s := err.Error()
						firstErr.Store(&s)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cancel()
	<-sampleDone
	cpu1, _ := procCPUSeconds(*pid)

	total := newHistogram()
	for _, h := range hists {
		total.merge(h)
	}
	r := Result{
		Label: *label, Kind: *kind, Series: *series, Set: *set, Concurrency: *conc,
		Requests: total.n, Errors: errCount.Load(), Seconds: elapsed.Seconds(),
		PerSecond:     float64(total.n) / elapsed.Seconds(),
		P50Micros:     micros(total.quantile(0.50)),
		P99Micros:     micros(total.quantile(0.99)),
		MaxMicros:     micros(total.max),
		RSSSamplesMiB: samples,
	}
	if p := firstErr.Load(); p != nil {
		r.FirstError = *p
	}
	if *pid > 0 && total.n > 0 {
		r.CPUPer1000 = (cpu1 - cpu0) / float64(total.n) * 1000
		if v, err := procStatusKiB(*pid, "VmHWM"); err == nil {
			r.PeakRSSMiB = float64(v) / 1024
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	fmt.Fprintf(os.Stderr, "loadgen: %-12s %-8s c=%-3d %8.0f/s p50 %7.0fµs p99 %7.0fµs errors %d %s\n",
		r.Label, r.Set, r.Concurrency, r.PerSecond, r.P50Micros, r.P99Micros, r.Errors, r.FirstError)
	return nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func readTokens(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tokens %q: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read tokens %q: no tokens", path)
	}
	return out, nil
}

func newCaller(kind, addr, opaPath string) (caller, error) {
	switch kind {
	case "rest":
		return newHTTPCaller("http://"+addr+"/v1/decisions", `{"id_token":"`, `"}`, []byte(`"allowed":true`)), nil
	case "opa":
		return newHTTPCaller("http://"+addr+opaPath, `{"input":{"token":"`, `"}}`, []byte(`"allowed":true`)), nil
	case "grpc":
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("grpc client for %q: %w", addr, err)
		}
		return &grpcCaller{cc: cc, client: authzv1.NewDecisionServiceClient(cc)}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// httpCaller posts a JSON body over its own HTTP/1.1 keep-alive
// connection and checks that the answer is an allow.
type httpCaller struct {
	client         *http.Client
	url            string
	prefix, suffix string
	want           []byte
	buf            bytes.Buffer
	body           []byte
}

func newHTTPCaller(url, prefix, suffix string, want []byte) *httpCaller {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &httpCaller{client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		url: url, prefix: prefix, suffix: suffix, want: want}
}

func (c *httpCaller) call(ctx context.Context, tok string) error {
	c.buf.Reset()
	c.buf.WriteString(c.prefix)
	c.buf.WriteString(tok)
	c.buf.WriteString(c.suffix)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.buf.Bytes()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	c.body, err = appendAll(c.body[:0], resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, c.body)
	}
	if !bytes.Contains(c.body, c.want) {
		return fmt.Errorf("answer is not an allow: %.200s", c.body)
	}
	return nil
}

func appendAll(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

func (c *httpCaller) close() { c.client.CloseIdleConnections() }

// grpcCaller calls Decide over its own gRPC channel.
type grpcCaller struct {
	cc     *grpc.ClientConn
	client authzv1.DecisionServiceClient
}

func (c *grpcCaller) call(ctx context.Context, tok string) error {
	resp, err := c.client.Decide(ctx, &authzv1.DecideRequest{IdToken: tok})
	if err != nil {
		return err
	}
	if !resp.GetAllowed() {
		return errors.New("answer is not an allow")
	}
	return nil
}

func (c *grpcCaller) close() { c.cc.Close() }

// procCPUSeconds returns the user plus system CPU time of a process.
func procCPUSeconds(pid int) (float64, error) {
	if pid <= 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procStatusKiB reads a "kB" field such as VmHWM from /proc/PID/status.
func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
