package policy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rolePolicy is a policy that grants one role, so that a decision shows
// which revision made it.
func rolePolicy(role string) string {
	return fmt.Sprintf("package test.authz\n\ndefault allow := false\n\nallow if count(roles) > 0\n\nroles contains %q\n", role)
}

// brokenPolicy does not parse: the body opened on line 5 is still open at
// the end of the file, which the parser reports at line 6.
const brokenPolicy = "package test.authz\n\ndefault allow := false\n\nallow if {\n"

// writeFile replaces a file atomically, the way editors and ConfigMap
// updates do, so that no reader sees it half written.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatalf("write %q: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("rename to %q: %v", path, err)
	}
}

// newDirEngine writes a role policy into a new directory and loads it.
func newDirEngine(t *testing.T, role string) (*Engine, string, *prometheus.Registry, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "authz.rego"), rolePolicy(role))
	logger, logs := newLogger()
	reg := prometheus.NewRegistry()
	e, err := New(Options{Dir: dir, Package: "test.authz", Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e, dir, reg, logs
}

// decidedRole evaluates and returns the single role decided, failing the
// test on an error.
func decidedRole(t *testing.T, e *Engine) string {
	t.Helper()
	res, err := e.Evaluate(context.Background(), Input{}, false)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	if len(res.Roles) != 1 {
		t.Fatalf("got roles %q, want one", res.Roles)
	}
	return res.Roles[0]
}

// waitFor polls cond until it holds or a generous deadline passes; the
// deadline only guards against a hang on a loaded machine, the latency is
// logged.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("%s after %v", what, d.Round(time.Millisecond))
	return d
}

func reloads(reg *prometheus.Registry, result string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "authzd_policy_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// revisionSeries returns the series of authzd_policy_revision_info.
func revisionSeries(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "authzd_policy_revision_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

func startWatch(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Watch(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestWatchAppliesGoodChange(t *testing.T) {
	e, dir, reg, _ := newDirEngine(t, "A")
	startWatch(t, e)
	before := e.Info()

	writeFile(t, filepath.Join(dir, "authz.rego"), rolePolicy("B"))
	waitFor(t, "change applied", func() bool { return decidedRole(t, e) == "B" })

	info := e.Info()
	if info.Revision == before.Revision {
		t.Errorf("got revision %q unchanged, want a new one", info.Revision)
	}
	if !info.LoadedAt.After(before.LoadedAt) {
		t.Errorf("got LoadedAt %v, want after %v", info.LoadedAt, before.LoadedAt)
	}
	if got := reloads(reg, "success"); got != 2 {
		t.Errorf("got %v successful loads, want 2", got)
	}
	if got, want := revisionSeries(reg), map[string]float64{info.Revision: 1}; !maps.Equal(got, want) {
		t.Errorf("got revision series %v, want only the serving one %v", got, want)
	}

	// A new file in a new subdirectory is seen too.
	writeFile(t, filepath.Join(dir, "more", "extra.rego"), "package test.authz\n\nreasons contains \"extra\"\n")
	waitFor(t, "new subdirectory applied", func() bool {
		res, err := e.Evaluate(context.Background(), Input{}, false)
		return err == nil && len(res.Reasons) == 1
	})
}

func TestWatchRefusesBrokenChange(t *testing.T) {
	e, dir, reg, logs := newDirEngine(t, "A")
	// A fast poll, so that many polls see the broken file and must not
	// log it again.
	e.opts.PollInterval = 20 * time.Millisecond
	startWatch(t, e)
	good := e.Revision()

	// Decisions keep flowing, from the last good revision, while the broken
	// change is refused.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var decisions, failures atomic.Int64
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := e.Evaluate(context.Background(), Input{}, false)
				if err != nil || !res.Allow || res.Revision != good || res.Roles[0] != "A" {
					failures.Add(1)
				}
				decisions.Add(1)
			}
		})
	}

	writeFile(t, filepath.Join(dir, "authz.rego"), brokenPolicy)
	waitFor(t, "change refused", func() bool { return e.Info().LastError != "" })
	// Let decisions flow, and the poll run a dozen times, after the refusal.
	n, refusedAt := decisions.Load(), time.Now()
	waitFor(t, "decisions and polls after the refusal", func() bool {
		return decisions.Load() > n+100 && time.Since(refusedAt) > 12*e.opts.PollInterval
	})
	cancel()
	wg.Wait()

	if f := failures.Load(); f != 0 {
		t.Errorf("got %d failed or changed decisions of %d during the refusal, want 0", f, decisions.Load())
	}
	info := e.Info()
	if info.Revision != good {
		t.Errorf("got revision %q, want the last good %q", info.Revision, good)
	}
	if !strings.Contains(info.LastError, "authz.rego:6") {
		t.Errorf("got LastError %q, want the file and line", info.LastError)
	}
	if got := reloads(reg, "failure"); got != 1 {
		t.Errorf("got %v refused loads, want 1", got)
	}
	errs := logs.records(t, "ERROR")
	if len(errs) != 1 {
		t.Fatalf("got %d ERROR records, want 1 for the refused change: %v", len(errs), errs)
	}
	if msg, _ := errs[0]["error"].(string); !strings.Contains(msg, "authz.rego:6") {
		t.Errorf("got logged error %q, want the file and line", msg)
	}

	// Fixing the file serves the fix; the refusal stays on record.
	writeFile(t, filepath.Join(dir, "authz.rego"), rolePolicy("C"))
	waitFor(t, "fix applied", func() bool { return decidedRole(t, e) == "C" })
	if e.Info().LastError == "" {
		t.Errorf("got LastError cleared, want the last refusal kept")
	}
}

// TestWatchConfigMapSwap updates a directory the way the kubelet updates a
// ConfigMap volume: the files are symbolic links through "..data", and an
// update swaps "..data" to a new hidden directory in one rename.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2026_12_03_v1", "authz.rego"), rolePolicy("A"))
	mustSymlink(t, "..2026_12_03_v1", filepath.Join(dir, "..data"))
	mustSymlink(t, filepath.Join("..data", "authz.rego"), filepath.Join(dir, "authz.rego"))

	e, err := New(Options{Dir: dir, Package: "test.authz"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got, want := e.Info().Files, []string{"authz.rego"}; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("got files %q, want %q: hidden ConfigMap directories must be skipped", got, want)
	}
	startWatch(t, e)
	if got := decidedRole(t, e); got != "A" {
		t.Fatalf("got role %q, want A", got)
	}

	writeFile(t, filepath.Join(dir, "..2026_12_03_v2", "authz.rego"), rolePolicy("B"))
	mustSymlink(t, "..2026_12_03_v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatalf("swap ..data: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_12_03_v1")); err != nil {
		t.Fatalf("remove old: %v", err)
	}
	waitFor(t, "ConfigMap swap applied", func() bool { return decidedRole(t, e) == "B" })
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatalf("symlink: %v", err)
	}
}

// TestReload is what SIGHUP does.
func TestReload(t *testing.T) {
	e, dir, reg, _ := newDirEngine(t, "A")
	first := e.Info()

	if err := e.Reload(); err != nil {
		t.Fatalf("Reload of unchanged content: %v", err)
	}
	if got := e.Revision(); got != first.Revision {
		t.Errorf("got revision %q, want %q for unchanged content", got, first.Revision)
	}

	writeFile(t, filepath.Join(dir, "authz.rego"), rolePolicy("B"))
	if err := e.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := decidedRole(t, e); got != "B" {
		t.Errorf("got role %q right after Reload, want B", got)
	}
	second := e.Revision()

	writeFile(t, filepath.Join(dir, "authz.rego"), brokenPolicy)
	err := e.Reload()
	if err == nil || !strings.Contains(err.Error(), "authz.rego:6") {
		t.Fatalf("Reload of a broken change: got %v, want an error with the file and line", err)
	}
	info := e.Info()
	if info.Revision != second || decidedRole(t, e) != "B" {
		t.Errorf("got revision %q, want the last good %q still serving", info.Revision, second)
	}
	if info.LastError == "" || info.LastErrorAt.IsZero() {
		t.Errorf("got LastError %q at %v, want the refusal recorded", info.LastError, info.LastErrorAt)
	}
	if got := reloads(reg, "failure"); got != 1 {
		t.Errorf("got %v refused loads, want 1", got)
	}

	// A removed directory is refused the same way.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := e.Reload(); err == nil {
		t.Errorf("Reload of a removed directory: got nil error, want one")
	}
	if got := decidedRole(t, e); got != "B" {
		t.Errorf("got role %q, want B still serving", got)
	}
}

// TestConcurrentEvaluateDuringReload runs decisions while revisions swap;
// run it with -race. Every decision must come whole from one revision.
func TestConcurrentEvaluateDuringReload(t *testing.T) {
	e, dir, _, _ := newDirEngine(t, "A")
	roleOf := map[string]string{e.Revision(): "A"}
	writeFile(t, filepath.Join(dir, "authz.rego"), rolePolicy("B"))
	snap, err := readSnapshot(os.DirFS(dir))
	if err != nil {
		t.Fatalf("readSnapshot: %v", err)
	}
	roleOf[snap.hash] = "B"

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad atomic.Int64
	var firstBad atomic.Value
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := e.Evaluate(context.Background(), Input{}, true)
				if err != nil || len(res.Roles) != 1 || roleOf[res.Revision] != res.Roles[0] {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprintf("%+v %v", res, err))
				}
			}
		})
	}
	for i := range 20 {
		role := "A"
		if i%2 == 0 {
			role = "B"
		}
		writeFile(t, filepath.Join(dir, "authz.rego"), rolePolicy(role))
		if err := e.Reload(); err != nil {
			t.Errorf("Reload: %v", err)
		}
		_ = e.Info()
	}
	cancel()
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("got %d inconsistent decisions, first %v; want 0", n, firstBad.Load())
	}
}

func TestWatchOfFSReturns(t *testing.T) {
	e, err := New(Options{FS: os.DirFS("../../policies")})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan struct{})
	go func() {
		e.Watch(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch of an fs.FS source did not return")
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no source", opts: Options{}, want: "neither a directory nor a file system"},
		{name: "bad package", opts: Options{Dir: "../../policies", Package: "superset..authz"}, want: "not a dotted name"},
		{name: "keyword package", opts: Options{Dir: "../../policies", Package: "superset.if"}, want: "not a dotted name"},
		{name: "missing directory", opts: Options{Dir: filepath.Join(t.TempDir(), "nope")}, want: "read policy directory"},
		{name: "empty directory", opts: Options{Dir: t.TempDir()}, want: "is not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewRegistersMetricsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Dir: "../../policies", Registerer: reg}); err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(Options{Dir: "../../policies", Registerer: reg}); err == nil {
		t.Errorf("second New on the same registry: got nil error, want a registration error")
	}
}
