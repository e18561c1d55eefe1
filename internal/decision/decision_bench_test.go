package decision

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authzd/authzd/internal/devidp"
	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/rls"
	"github.com/authzd/authzd/internal/token"
	"github.com/authzd/authzd/policies"
)

// benchFixture is the real decision path over loopback: a dev identity
// provider serving its JWKS through httptest, the token verifier, the
// engine with the embedded shipped policy, and the RLS renderer.
type benchFixture struct {
	idp *devidp.Provider
	// engine shares results between people with equal declared input, as
	// served; unshared evaluates every time, as for the first person of
	// each kind.
	engine, unshared *policy.Engine
	renderer         *rls.Renderer
	raw              string // a token of a person with groups, a department and a team
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	idp := startDevIdP(b)
	raw, err := idp.Mint(map[string]any{
		"sub": "alice", "email": "alice@example.com",
		"given_name": "Alice", "family_name": "Smith",
		"groups":     []string{"Data Engineers", "Analytics Users"},
		"department": "Finance", "team": "Payments",
	})
	if err != nil {
		b.Fatalf("Mint: %v", err)
	}
	engine, err := policy.New(policy.Options{FS: policies.FS})
	if err != nil {
		b.Fatalf("policy.New: %v", err)
	}
	unshared, err := policy.New(policy.Options{FS: policies.FS, ResultCacheSize: -1})
	if err != nil {
		b.Fatalf("policy.New: %v", err)
	}
	renderer, err := rls.NewRenderer(rls.Conf{})
	if err != nil {
		b.Fatalf("rls.NewRenderer: %v", err)
	}
	return &benchFixture{idp: idp, engine: engine, unshared: unshared, renderer: renderer, raw: raw}
}

// verifier returns a started verifier of the fixture's issuer that has
// fetched its keys; cacheSize is token.Options.CacheSize (-1 disables).
func (f *benchFixture) verifier(b *testing.B, cacheSize int) *token.Verifier {
	b.Helper()
	return startVerifier(b, f.idp, cacheSize)
}

// service returns a decision service over the fixture with the given
// engine and verifier and decision cache sizes (-1 disables either).
func (f *benchFixture) service(b *testing.B, engine *policy.Engine, tokenCache, decisionCache int) *Service {
	b.Helper()
	s, err := New(Options{
		Verifier:  f.verifier(b, tokenCache),
		Evaluator: engine,
		Renderer:  f.renderer,
		CacheSize: decisionCache,
	})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	return s
}

// BenchmarkVerify measures a full RS256 verification of an ID token, the
// verifier's cache disabled: the first half of the floor of a decision.
func BenchmarkVerify(b *testing.B) {
	f := newBenchFixture(b)
	v := f.verifier(b, -1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, f.raw); err != nil {
			b.Fatalf("Verify: %v", err)
		}
	}
}

// BenchmarkEvaluate measures one evaluation of the shipped policy for the
// verified identity: the second half of the floor of a decision. unshared
// evaluates the policy; shared finds the result computed for the first
// person with the same groups and mapped claims.
func BenchmarkEvaluate(b *testing.B) {
	f := newBenchFixture(b)
	id, err := f.verifier(b, -1).Verify(context.Background(), f.raw)
	if err != nil {
		b.Fatalf("Verify: %v", err)
	}
	in := policy.Input{
		Issuer: id.Issuer, Claims: id.Claims, Groups: id.Groups,
		Username: id.Username, Context: map[string]any{},
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name   string
		engine *policy.Engine
	}{
		{name: "unshared", engine: f.unshared},
		{name: "shared", engine: f.engine},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := bc.engine.Evaluate(ctx, in, false)
				if err != nil || !res.Allow {
					b.Fatalf("Evaluate: %+v, %v", res, err)
				}
			}
		})
	}
}

// BenchmarkDecide measures a whole decision (verify, evaluate, render).
// uncached disables every cache, as for a token never seen before of the
// first person of their kind; compare it with the sum of BenchmarkVerify
// and BenchmarkEvaluate/unshared. shared_policy is a token never seen
// before of a person whose groups and mapped claims were seen. The
// verifier_cached case keeps the verifier's token cache on.
func BenchmarkDecide(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name       string
		engine     *policy.Engine
		tokenCache int
	}{
		{name: "uncached", engine: f.unshared, tokenCache: -1},
		{name: "shared_policy", engine: f.engine, tokenCache: -1},
		{name: "verifier_cached", engine: f.unshared, tokenCache: 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := f.service(b, bc.engine, bc.tokenCache, -1)
			b.ReportAllocs()
			for b.Loop() {
				d, err := s.Decide(ctx, Request{ID: "bench", IDToken: f.raw})
				if err != nil || !d.Allowed {
					b.Fatalf("Decide: %+v, %v", d, err)
				}
			}
		})
	}
	// As a gRPC server calls it: each decision on a new goroutine, whose
	// small initial stack grows during the deep recursion of evaluation.
	b.Run("new_goroutine", func(b *testing.B) {
		s := f.service(b, f.unshared, -1, -1)
		b.ReportAllocs()
		for b.Loop() {
			done := make(chan error, 1)
			go func() {
				_, err := s.Decide(ctx, Request{ID: "bench", IDToken: f.raw})
				done <- err
			}()
			if err := <-done; err != nil {
				b.Fatalf("Decide: %v", err)
			}
		}
	})
}

// BenchmarkDecideCached measures a repeated request (same token, policy
// revision and context) answered by the whole-decision cache.
func BenchmarkDecideCached(b *testing.B) {
	f := newBenchFixture(b)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		ctx  map[string]any
	}{
		{name: "no_context"},
		{name: "with_context", ctx: map[string]any{"database": "examples", "table": "sales"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := f.service(b, f.engine, 0, 0)
			req := Request{ID: "bench", IDToken: f.raw, Context: bc.ctx}
			if _, err := s.Decide(ctx, req); err != nil {
				b.Fatalf("Decide: %v", err)
			}
			b.ReportAllocs()
			for b.Loop() {
				d, err := s.Decide(ctx, req)
				if err != nil || !d.Allowed || d.ID != "bench" {
					b.Fatalf("Decide: %+v, %v", d, err)
				}
			}
		})
	}
}

// startVerifier returns a verifier of idp's issuer, started for the life of
// the test, once it has fetched the keys; cacheSize is
// token.Options.CacheSize (-1 disables).
func startVerifier(tb testing.TB, idp *devidp.Provider, cacheSize int) *token.Verifier {
	tb.Helper()
	v, err := token.NewVerifier([]token.IssuerConfig{{
		Issuer: idp.Issuer(), Audiences: []string{devidp.Audience},
	}}, token.Options{CacheSize: cacheSize})
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	v.Start(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for !v.Ready() {
		if time.Now().After(deadline) {
			tb.Fatal("verifier did not fetch the keys within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v
}

// startDevIdP serves a dev identity provider (discovery and JWKS) on a
// loopback test server for the life of the test.
func startDevIdP(tb testing.TB) *devidp.Provider {
	tb.Helper()
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	idp, err := devidp.New(devidp.Options{BaseURL: srv.URL})
	if err != nil {
		tb.Fatalf("devidp.New: %v", err)
	}
	h = idp.Handler()
	return idp
}
