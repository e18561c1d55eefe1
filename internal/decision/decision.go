// Package decision makes one authorization decision: it verifies the ID
// token, evaluates the policy over the verified claims and renders the
// policy's row-level security filters to SQL. It knows nothing of gRPC or
// HTTP; the server package maps its errors to status codes.
//
// Every error on the way fails closed: Decide returns either a decision
// from a successful policy evaluation, or an error and no decision.
package decision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/rls"
	"github.com/authzd/authzd/internal/token"
	"github.com/authzd/authzd/internal/tracing"
)

// Verifier checks an ID token and returns who it names.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*token.Identity, error)
}

// Evaluator evaluates the serving policy revision.
type Evaluator interface {
	Evaluate(ctx context.Context, in policy.Input, explain bool) (*policy.Result, error)
}

// Renderer renders structured RLS filters to SQL clauses.
type Renderer interface {
	RenderAll(filters []rls.Filter) ([]rls.Rendered, error)
}

// Request asks for one decision.
type Request struct {
	// ID is the decision id the caller assigned.
	ID string
	// IDToken is the raw ID token.
	IDToken string
	// Context is handed to the policy as input.context.
	Context map[string]any
	// Explain asks for the matched policy data entries.
	Explain bool
}

// Decision is the answer for one request.
type Decision struct {
	ID       string
	Allowed  bool
	Identity *token.Identity
	// Roles are Superset role names, sorted; empty when not allowed.
	Roles []string
	// Filters are the rendered RLS filters; empty when not allowed.
	Filters []rls.Rendered
	// Reasons explain the decision.
	Reasons []string
	// Revision is the policy revision that decided.
	Revision string
	// ExpiresAt is when the decision stops being valid (the token's exp).
	ExpiresAt time.Time
	// Matches are the policy data entries that matched, when explain was
	// asked for.
	Matches []map[string]any
	// Seen is the input as the policy saw it, when explain was asked for:
	// only the declared parts for a policy that declares input_paths.
	Seen *policy.Input
	// Timing breaks the decision's latency down.
	Timing Timing
}

// Timing is how long each step of a decision took.
type Timing struct {
	Verify   time.Duration
	Evaluate time.Duration
	Render   time.Duration
}

// InvalidRequestError is returned when the request itself is unusable, for
// example when the token is missing or too large. It is the caller's
// mistake, never the token's.
type InvalidRequestError struct {
	// Reason is a stable machine-readable cause.
	Reason string
	// Message names the problem.
	Message string
}

func (e *InvalidRequestError) Error() string { return e.Message }

// Stable reasons of InvalidRequestError.
const (
	ReasonTokenMissing  = "TOKEN_MISSING"
	ReasonTokenTooLarge = "TOKEN_TOO_LARGE"
)

// EvaluationError is returned when the policy could not decide or when its
// answer could not be rendered safely. The decision fails closed.
type EvaluationError struct {
	// Reason is POLICY_ERROR or RLS_RENDER_FAILED.
	Reason string
	// Revision is the policy revision that failed, when known.
	Revision string
	Err      error
}

func (e *EvaluationError) Error() string { return e.Err.Error() }

func (e *EvaluationError) Unwrap() error { return e.Err }

// Stable reasons of EvaluationError.
const (
	ReasonPolicyError = "POLICY_ERROR"
	ReasonRenderError = "RLS_RENDER_FAILED"
)

// Options configures a Service.
type Options struct {
	Verifier  Verifier
	Evaluator Evaluator
	Renderer  Renderer
	// MaxTokenBytes bounds the raw token's size.
	MaxTokenBytes int
	// CacheSize bounds the whole-decision cache, which answers a repeated
	// request (same token, policy revision, context and explain flag)
	// without verifying or evaluating again. Zero means DefaultCacheSize;
	// a negative value disables the cache. The cache is used only when the
	// Evaluator can name its revision (a Revision() string method, as
	// *policy.Engine has).
	CacheSize int
	// CacheTTL bounds how long a cached decision answers; it never
	// outlives its token's exp either. It also bounds how long a decision
	// survives the removal of the token's signing key from the issuer's
	// key set. Zero means DefaultCacheTTL.
	CacheTTL time.Duration
	// Now returns the current time for cache expiry. Nil means time.Now.
	Now func() time.Time
}

// Service makes decisions. It is safe for concurrent use.
type Service struct {
	opts  Options
	cache *cache     // nil when disabled
	rev   revisioner // the evaluator's revision, when cached
}

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Verifier == nil || opts.Evaluator == nil || opts.Renderer == nil {
		return nil, errors.New("decision: verifier, evaluator and renderer are required")
	}
	if opts.MaxTokenBytes <= 0 {
		opts.MaxTokenBytes = 16 << 10
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{opts: opts}
	if rev, ok := opts.Evaluator.(revisioner); ok && opts.CacheSize > 0 {
		s.cache = newCache(opts.CacheSize, opts.CacheTTL)
		s.rev = rev
	}
	return s, nil
}

// Decide makes one decision. Its errors are *InvalidRequestError,
// *token.Error or *EvaluationError. A decision may come from the cache; its
// Identity, Roles, Filters, Reasons and Matches may then be shared with
// other callers and must not be modified.
func (s *Service) Decide(ctx context.Context, req Request) (*Decision, error) {
	switch {
	case req.IDToken == "":
		return nil, &InvalidRequestError{Reason: ReasonTokenMissing,
			Message: "id_token is missing or empty"}
	case len(req.IDToken) > s.opts.MaxTokenBytes:
		return nil, &InvalidRequestError{Reason: ReasonTokenTooLarge,
			Message: fmt.Sprintf("id_token is %d bytes, over the limit of %d",
				len(req.IDToken), s.opts.MaxTokenBytes)}
	}

	var (
		key    cacheKey
		keyed  bool
		keyRev string
	)
	if s.cache != nil {
		keyRev = s.rev.Revision()
		if key, keyed = s.cache.key(&req, keyRev); keyed {
			if d, ok := s.cache.get(key, s.opts.Now()); ok {
				d.ID = req.ID
				return d, nil
			}
		}
	}

	start := time.Now()
	vctx, span := tracing.StartSpan(ctx, "authzd.verify")
	id, err := s.opts.Verifier.Verify(vctx, req.IDToken)
	tracing.RecordError(span, err)
	span.End()
	if err != nil {
		return nil, err
	}
	verified := time.Now()

	in := policy.Input{
		Issuer:        id.Issuer,
		Claims:        id.Claims,
		Groups:        id.Groups,
		GroupsOverage: id.GroupsOverage,
		Username:      id.Username,
		Context:       req.Context,
	}
	if in.Groups == nil {
		in.Groups = []string{}
	}
	if in.Context == nil {
		in.Context = map[string]any{}
	}
	ectx, span := tracing.StartSpan(ctx, "authzd.evaluate")
	res, err := s.opts.Evaluator.Evaluate(ectx, in, req.Explain)
	tracing.RecordError(span, err)
	span.End()
	if err != nil {
		return nil, &EvaluationError{Reason: ReasonPolicyError, Err: err}
	}
	evaluated := time.Now()

	d := &Decision{
		ID:        req.ID,
		Identity:  id,
		Reasons:   res.Reasons,
		Revision:  res.Revision,
		ExpiresAt: id.Expiry,
		Matches:   res.Matches,
		Seen:      res.Seen,
		Roles:     []string{},
		Filters:   []rls.Rendered{},
	}
	if res.Allow {
		filters, err := s.opts.Renderer.RenderAll(res.Filters)
		if err != nil {
			return nil, &EvaluationError{Reason: ReasonRenderError, Revision: res.Revision,
				Err: fmt.Errorf("render rls filters: %w", err)}
		}
		d.Allowed = true
		d.Roles = res.Roles
		d.Filters = filters
	}
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	d.Timing = Timing{
		Verify:   verified.Sub(start),
		Evaluate: evaluated.Sub(verified),
		Render:   time.Since(evaluated),
	}
	// A reload between reading the revision and evaluating would file this
	// decision under the wrong revision: store it only when they agree.
	if keyed && d.Revision == keyRev {
		s.cache.put(key, d, s.opts.Now())
	}
	return d, nil
}
