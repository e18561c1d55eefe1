package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authzd/authzd/internal/lru"
)

// DefaultEvalTimeout bounds one evaluation when Options.EvalTimeout is zero.
const DefaultEvalTimeout = 2 * time.Second

// Options configure an Engine.
type Options struct {
	// Package is the dotted package whose rules make the decision. Default
	// "superset.authz".
	Package string
	// Dir is the policy directory. One of Bundle, Dir and FS must be set;
	// Bundle wins, then Dir.
	Dir string
	// Bundle, when set, fetches the policy as an OPA bundle from a server,
	// when Watch runs. New then returns an engine with no revision, which
	// Loaded and Ready report, and whose Evaluate fails with ErrNotLoaded
	// until the first bundle is activated.
	Bundle *BundleConf
	// FS is a policy tree, such as the copy embedded in the binary. It is
	// read once and never watched.
	FS fs.FS
	// Source labels the policy in Info and in file names of errors; default
	// the bundle URL without its query, Dir, or "embedded" for FS.
	Source string
	// Logger receives reload and evaluation errors. Default: discard.
	Logger *slog.Logger
	// Registerer registers the engine's metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// EvalTimeout bounds one evaluation. Default DefaultEvalTimeout.
	EvalTimeout time.Duration
	// PollInterval is how often Watch compares the content hash of the
	// directory with the serving revision. Default one second.
	PollInterval time.Duration
	// Debounce is how long Watch waits after a file event before reloading,
	// so that an editor's burst of writes loads once. Default 200 ms.
	Debounce time.Duration
	// ResultCacheSize bounds the results kept per revision for a policy
	// that declares the input it reads (rule input_paths), shared by
	// everyone whose declared input is equal. Zero means
	// DefaultResultCacheSize; negative turns sharing off.
	ResultCacheSize int
}

// Engine evaluates the policy of one package. It is safe for concurrent
// use; a reload swaps the serving revision atomically, and evaluations in
// flight finish on the revision they started with.
type Engine struct {
	opts    Options
	pkg     ast.Ref
	log     *slog.Logger
	metrics *metrics

	current atomic.Pointer[revision]

	// mu serializes reloads and guards the fields below.
	mu          sync.Mutex
	lastError   string
	lastErrorAt time.Time
	// refused is the content hash of the last refused change, so that the
	// poll does not log the same refusal every second.
	refused string
	// bundle is set when the policy comes from a bundle server.
	bundle *bundleSource
}

// New loads, compiles and smoke-tests the policy, and returns an engine
// serving it. It fails when the policy does not compile, does not define
// the package or its allow rule, or fails the smoke evaluation. With a
// Bundle, New only checks the configuration and reads the signing key; the
// bundle is fetched and activated by Watch.
func New(opts Options) (*Engine, error) {
	if opts.Package == "" {
		opts.Package = DefaultPackage
	}
	if opts.Bundle == nil && opts.Dir == "" && opts.FS == nil {
		return nil, errors.New("new policy engine: neither a directory nor a file system nor a bundle given")
	}
	if opts.Bundle != nil {
		opts.Dir, opts.FS = "", nil
	}
	if opts.Source == "" {
		switch {
		case opts.Bundle != nil:
			opts.Source = redactURL(opts.Bundle.URL)
		case opts.Dir != "":
			opts.Source = opts.Dir
		default:
			opts.Source = "embedded"
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EvalTimeout <= 0 {
		opts.EvalTimeout = DefaultEvalTimeout
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.ResultCacheSize == 0 {
		opts.ResultCacheSize = DefaultResultCacheSize
	}
	pkg, err := pkgRef(opts.Package)
	if err != nil {
		return nil, fmt.Errorf("new policy engine: %w", err)
	}
	e := &Engine{opts: opts, pkg: pkg, log: opts.Logger.With("component", "policy")}
	if opts.Registerer != nil {
		if e.metrics, err = newMetrics(opts.Registerer); err != nil {
			return nil, fmt.Errorf("new policy engine: %w", err)
		}
	}
	if opts.Bundle != nil {
		if e.bundle, err = e.newBundleSource(*opts.Bundle); err != nil {
			return nil, fmt.Errorf("new policy engine: %w", err)
		}
		return e, nil
	}
	snap, err := e.read()
	if err != nil {
		return nil, fmt.Errorf("new policy engine: %w", err)
	}
	rev, err := e.build(snap)
	if err != nil {
		return nil, fmt.Errorf("new policy engine: source %q: %w", opts.Source, err)
	}
	e.swap(rev)
	e.metrics.reloaded("success")
	e.log.Info("policy loaded", append([]any{"source", opts.Source, "revision", rev.id, "files", len(rev.files)},
		rev.sharingAttrs()...)...)
	return e, nil
}

func (e *Engine) fsys() fs.FS {
	if e.opts.Dir != "" {
		return dirFS(e.opts.Dir)
	}
	return e.opts.FS
}

func (e *Engine) read() (*snapshot, error) {
	if e.bundle != nil {
		// e.mu is held.
		if e.bundle.last == nil {
			return nil, ErrNotLoaded
		}
		return e.bundle.last, nil
	}
	return readSnapshot(e.fsys())
}

// revisionID is the serving revision, or "" before the first bundle.
func (e *Engine) revisionID() string {
	if rev := e.current.Load(); rev != nil {
		return rev.id
	}
	return ""
}

// build compiles a snapshot and runs the smoke evaluation.
func (e *Engine) build(snap *snapshot) (*revision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := compile(ctx, snap, e.pkg, e.opts.Source)
	if err != nil {
		return nil, err
	}
	switch {
	case rev.unshared == "" && e.opts.ResultCacheSize < 0:
		rev.unshared = "result sharing is turned off"
	case rev.unshared == "":
		rev.results = lru.New[[sha256.Size]byte, *Result](e.opts.ResultCacheSize)
	}
	// Smoke evaluation: an empty input must evaluate, with the contract's
	// types, before the revision may serve.
	if _, err := e.eval(ctx, rev, Input{}, true); err != nil {
		return nil, fmt.Errorf("smoke evaluation with an empty input: %w", err)
	}
	return rev, nil
}

func (e *Engine) swap(rev *revision) {
	rev.loadedAt = time.Now().UTC()
	old := e.current.Swap(rev)
	if e.metrics != nil {
		if old != nil && old.id != rev.id {
			e.metrics.revision.DeleteLabelValues(old.id)
		}
		e.metrics.revision.WithLabelValues(rev.id).Set(1)
	}
}

// Reload reads the source again and serves it when it compiles and passes
// the smoke evaluation. Otherwise it returns the error, which it has also
// logged at ERROR and recorded in Info, and the serving revision stays.
// Reload is what SIGHUP calls; it recompiles even when the content did not
// change. For a bundle it recompiles the serving bundle; new bundles come
// from polling.
func (e *Engine) Reload() error {
	if e.bundle != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		snap, err := e.read()
		if err != nil {
			return fmt.Errorf("reload policy from %q: %w", e.opts.Source, err)
		}
		return e.apply(snap, true)
	}
	return e.reload(true)
}

// reload loads the source when its content hash differs from the serving
// revision and from the last refused change, or always when force is set.
func (e *Engine) reload(force bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	snap, err := e.read()
	if err != nil {
		if !force && e.refused == "" && e.lastError == err.Error() {
			// The same unreadable source as at the last poll; logged once.
			return nil
		}
		return e.refuse("", err)
	}
	return e.apply(snap, force)
}

// apply builds snap and serves it, unless it is the serving revision or
// the last refused one and force is not set; e.mu is held.
func (e *Engine) apply(snap *snapshot, force bool) error {
	if !force && (snap.hash == e.revisionID() || snap.hash == e.refused) {
		return nil
	}
	rev, err := e.build(snap)
	if err != nil {
		return e.refuse(snap.hash, err)
	}
	rev.bundleRevision = snap.bundleRevision
	old := e.revisionID()
	e.swap(rev)
	e.refused = ""
	if e.bundle != nil {
		e.bundle.last = snap
	}
	e.metrics.reloaded("success")
	attrs := append([]any{"source", e.opts.Source, "revision", rev.id, "previous_revision", old},
		rev.sharingAttrs()...)
	if snap.bundleRevision != "" {
		attrs = append(attrs, "bundle_revision", snap.bundleRevision)
	}
	e.log.Info("policy reloaded", attrs...)
	return nil
}

// refuse records a refused change; e.mu is held.
func (e *Engine) refuse(hash string, err error) error {
	e.refused = hash
	e.lastError = err.Error()
	e.lastErrorAt = time.Now().UTC()
	e.metrics.reloaded("failure")
	e.log.Error("policy change refused; the last good revision keeps serving",
		"source", e.opts.Source, "revision", e.revisionID(), "refused_revision", hash, "error", err)
	return fmt.Errorf("reload policy from %q: %w", e.opts.Source, err)
}

// Info describes the serving revision and the last refused change.
func (e *Engine) Info() Info {
	rev := e.current.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	info := Info{
		Source:      e.opts.Source,
		LastError:   e.lastError,
		LastErrorAt: e.lastErrorAt,
	}
	if e.bundle != nil {
		info.BundleError = e.bundle.fetchErr
	}
	if rev != nil {
		info.Revision = rev.id
		info.BundleRevision = rev.bundleRevision
		info.LoadedAt = rev.loadedAt
		info.Packages = append([]string(nil), rev.packages...)
		info.Files = append([]string(nil), rev.files...)
	}
	return info
}

// Revision returns the serving policy revision, or "" while none is loaded.
func (e *Engine) Revision() string {
	return e.revisionID()
}

// Evaluate decides for one input with the serving revision. Matches are
// filled only when explain is set. An undefined package, a rule of the
// wrong type, a runtime error or a timeout is an error, logged at ERROR
// with the rule and the revision; a Result is returned only on success, so
// an error never comes with Allow set.
func (e *Engine) Evaluate(ctx context.Context, in Input, explain bool) (*Result, error) {
	rev := e.current.Load()
	if rev == nil {
		return nil, ErrNotLoaded
	}
	start := time.Now()
	res, err := e.eval(ctx, rev, in, explain)
	e.metrics.observe(time.Since(start), err)
	if err != nil {
		attrs := []any{"revision", rev.id, "package", e.opts.Package, "error", err}
		var re *ruleError
		if errors.As(err, &re) {
			attrs = append(attrs, "rule", re.rule)
		}
		var te *topdown.Error
		if errors.As(err, &te) && te.Location != nil {
			// The location names the rule's file and line.
			attrs = append(attrs, "location", te.Location.String())
		}
		if errors.Is(err, context.Canceled) {
			// The caller went away; nothing for an operator to fix.
			e.log.DebugContext(ctx, "policy evaluation canceled", attrs...)
			return nil, err
		}
		e.log.ErrorContext(ctx, "policy evaluation failed", attrs...)
		return nil, err
	}
	return res, nil
}

// Watch reloads the policy directory when it changes, until ctx is done:
// file events (debounced) and a poll of the content hash, which catches a
// Kubernetes ConfigMap's symbolic link swap that file events miss. For a
// bundle, Watch polls the bundle server with the OPA bundle protocol and
// activates every new bundle. An engine over an fs.FS is not watched.
func (e *Engine) Watch(ctx context.Context) {
	if e.bundle != nil {
		e.runBundle(ctx)
		return
	}
	if e.opts.Dir == "" {
		e.log.Debug("policy source is not a directory; not watching", "source", e.opts.Source)
		return
	}
	e.watch(ctx)
}
