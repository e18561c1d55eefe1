package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// logBuffer collects JSON log records for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the log records at level.
func (b *logBuffer) records(t *testing.T, level string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("decode log line %q: %v", line, err)
		}
		if r["level"] == level {
			out = append(out, r)
		}
	}
	return out
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func TestEngineCases(t *testing.T) {
	for _, c := range readCases(t, "engine/*/case.json") {
		t.Run(c.Name, func(t *testing.T) {
			logger, logs := newLogger()
			opts := Options{
				Dir:     filepath.Join(filepath.Dir(c.Path), "policy"),
				Package: c.Package,
				Logger:  logger,
			}
			if opts.Package == "" {
				opts.Package = "test.authz"
			}
			if c.EvalTimeout != "" {
				d, err := time.ParseDuration(c.EvalTimeout)
				if err != nil {
					t.Fatalf("case eval_timeout: %v", err)
				}
				opts.EvalTimeout = d
			}
			e, err := New(opts)
			if c.WantLoadError != "" {
				if err == nil || !strings.Contains(err.Error(), c.WantLoadError) {
					t.Fatalf("New: got error %v, want one containing %q", err, c.WantLoadError)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}

			got, err := e.Evaluate(context.Background(), c.Input, c.Explain)
			if c.WantError != "" {
				if err == nil || !strings.Contains(err.Error(), c.WantError) {
					t.Fatalf("Evaluate: got error %v, want one containing %q", err, c.WantError)
				}
				if got != nil {
					t.Errorf("Evaluate: got result %+v with an error, want nil", got)
				}
				errs := logs.records(t, "ERROR")
				if len(errs) != 1 {
					t.Fatalf("got %d ERROR log records, want 1", len(errs))
				}
				if errs[0]["revision"] != e.Revision() {
					t.Errorf("got logged revision %v, want %q", errs[0]["revision"], e.Revision())
				}
				if c.WantRule != "" && errs[0]["rule"] != c.WantRule {
					t.Errorf("got logged rule %v, want %q", errs[0]["rule"], c.WantRule)
				}
				if c.WantRule == "" && errs[0]["location"] == nil && !strings.Contains(err.Error(), "deadline") {
					t.Errorf("got no logged location for a runtime error: %v", errs[0])
				}
				return
			}
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if c.Want == nil {
				t.Fatalf("case %q has neither want nor want_error", c.Path)
			}
			if diff := cmp.Diff(c.Want, got, cmpopts.IgnoreFields(Result{}, "Revision", "Seen"), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Evaluate mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateCanceled(t *testing.T) {
	logger, logs := newLogger()
	e, err := New(Options{Dir: "testdata/engine/timeout/policy", Package: "test.authz", Logger: logger})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := e.Evaluate(ctx, Input{Claims: map[string]any{"slow": true}}, false)
	if err == nil || res != nil {
		t.Fatalf("Evaluate with a canceled context: got %+v, %v; want no result and an error", res, err)
	}
	if errs := logs.records(t, "ERROR"); len(errs) != 0 {
		t.Errorf("got ERROR records %v for a caller that went away, want none", errs)
	}
}
