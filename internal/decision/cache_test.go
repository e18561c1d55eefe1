package decision

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/authzd/authzd/internal/devidp"
	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/rls"
	"github.com/authzd/authzd/internal/token"
	"github.com/authzd/authzd/policies"
)

// cacheFixture is a decision service over a real dev identity provider on
// loopback, the real verifier, and the shipped policy copied into a
// directory that a test may change and reload.
type cacheFixture struct {
	idp    *devidp.Provider
	engine *policy.Engine
	dir    string
	svc    *Service
	now    time.Time
	mu     sync.Mutex
}

func newCacheFixture(t *testing.T) *cacheFixture {
	t.Helper()
	idp := startDevIdP(t)

	dir := t.TempDir()
	for _, name := range []string{"superset/authz.rego", "superset/mappings/data.json"} {
		b, err := policies.FS.ReadFile(name)
		if err != nil {
			t.Fatalf("read embedded %q: %v", name, err)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	engine, err := policy.New(policy.Options{Dir: dir})
	if err != nil {
		t.Fatalf("policy.New: %v", err)
	}
	v := startVerifier(t, idp, -1)
	renderer, err := rls.NewRenderer(rls.Conf{})
	if err != nil {
		t.Fatalf("NewRenderer: %v", err)
	}
	f := &cacheFixture{idp: idp, engine: engine, dir: dir, now: time.Now()}
	f.svc, err = New(Options{Verifier: v, Evaluator: engine, Renderer: renderer,
		CacheTTL: time.Minute, Now: f.clock})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

func (f *cacheFixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *cacheFixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *cacheFixture) mint(t *testing.T, claims map[string]any) string {
	t.Helper()
	raw, err := f.idp.Mint(claims)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return raw
}

// decide asks for a decision and says whether the cache answered it: a
// cached decision carries no timing, a fresh one always some.
func (f *cacheFixture) decide(t *testing.T, req Request) (*Decision, bool) {
	t.Helper()
	d, err := f.svc.Decide(context.Background(), req)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return d, d.Timing == (Timing{})
}

func TestCacheAnswersRepeatedRequests(t *testing.T) {
	f := newCacheFixture(t)
	alice := f.mint(t, map[string]any{"sub": "alice", "groups": []string{"Data Engineers"}, "department": "Finance"})
	bob := f.mint(t, map[string]any{"sub": "bob", "groups": []string{"Analytics Users"}})

	first, hit := f.decide(t, Request{ID: "one", IDToken: alice})
	if hit {
		t.Fatal("got a cache hit for the first request, want a miss")
	}
	// Each step runs in order against the same service.
	for _, tc := range []struct {
		name    string
		req     Request
		wantHit bool
	}{
		{name: "same token again", req: Request{ID: "two", IDToken: alice}, wantHit: true},
		{name: "other token", req: Request{ID: "three", IDToken: bob}, wantHit: false},
		{name: "explain is another key", req: Request{ID: "four", IDToken: alice, Explain: true}, wantHit: false},
		{name: "explain again", req: Request{ID: "five", IDToken: alice, Explain: true}, wantHit: true},
		{name: "context is another key", req: Request{ID: "six", IDToken: alice,
			Context: map[string]any{"table": "sales", "n": 1.0}}, wantHit: false},
		{name: "same context, other map order", req: Request{ID: "seven", IDToken: alice,
			Context: map[string]any{"n": 1.0, "table": "sales"}}, wantHit: true},
		{name: "empty context is no context", req: Request{ID: "eight", IDToken: alice,
			Context: map[string]any{}}, wantHit: true},
	} {
		d, hit := f.decide(t, tc.req)
		if hit != tc.wantHit {
			t.Errorf("%s: got hit %v, want %v", tc.name, hit, tc.wantHit)
		}
		if d.ID != tc.req.ID {
			t.Errorf("%s: got decision id %q, want %q", tc.name, d.ID, tc.req.ID)
		}
	}
	again, _ := f.decide(t, Request{ID: "nine", IDToken: alice})
	opts := cmp.Options{cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return s == "ID" || s == "Timing"
	}, cmp.Ignore())}
	if diff := cmp.Diff(first, again, opts); diff != "" {
		t.Errorf("cached decision differs from the fresh one (-fresh +cached):\n%s", diff)
	}
}

func TestCacheFollowsPolicyRevision(t *testing.T) {
	f := newCacheFixture(t)
	raw := f.mint(t, map[string]any{"sub": "alice", "groups": []string{"Data Engineers"}})
	before, _ := f.decide(t, Request{IDToken: raw})
	if _, hit := f.decide(t, Request{IDToken: raw}); !hit {
		t.Fatal("got a miss for a repeated request, want a hit")
	}

	p := filepath.Join(f.dir, "superset/mappings/data.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `"Data Engineers": {"roles": ["Alpha"]}`,
		`"Data Engineers": {"roles": ["Alpha", "sql_lab"]}`, 1)
	if changed == string(b) {
		t.Fatal("the shipped mapping no longer has the line this test changes")
	}
	if err := os.WriteFile(p, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.engine.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	after, hit := f.decide(t, Request{IDToken: raw})
	if hit {
		t.Error("got a cache hit after the policy revision changed, want a miss")
	}
	if after.Revision == before.Revision {
		t.Errorf("got revision %q after the reload, want a new one", after.Revision)
	}
	if diff := cmp.Diff([]string{"Alpha", "sql_lab"}, after.Roles); diff != "" {
		t.Errorf("roles after the reload (-want +got):\n%s", diff)
	}
}

func TestCacheExpires(t *testing.T) {
	f := newCacheFixture(t)
	for _, tc := range []struct {
		name    string
		exp     time.Duration // token lifetime from now
		advance time.Duration
		wantHit bool
	}{
		{name: "within ttl and exp", exp: time.Hour, advance: 30 * time.Second, wantHit: true},
		{name: "past ttl", exp: time.Hour, advance: 61 * time.Second, wantHit: false},
		{name: "past exp before ttl", exp: 20 * time.Second, advance: 25 * time.Second, wantHit: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := f.mint(t, map[string]any{"sub": tc.name, "groups": []string{"Data Engineers"},
				"exp": f.clock().Add(tc.exp).Unix()})
			f.decide(t, Request{IDToken: raw})
			f.advance(tc.advance)
			// The verifier keeps real time, so a miss is still verified
			// and decided; only the cache sees the advanced clock.
			if _, hit := f.decide(t, Request{IDToken: raw}); hit != tc.wantHit {
				t.Errorf("got hit %v, want %v", hit, tc.wantHit)
			}
		})
	}
}

func TestCacheNeverStoresErrors(t *testing.T) {
	f := newCacheFixture(t)
	wrongAud := f.mint(t, map[string]any{"sub": "mallory", "aud": "not-superset"})
	for i := range 2 {
		_, err := f.svc.Decide(context.Background(), Request{IDToken: wrongAud})
		var te *token.Error
		if !errors.As(err, &te) || te.Reason != token.ReasonAudience {
			t.Fatalf("attempt %d: got error %v, want a *token.Error with reason %s", i, err, token.ReasonAudience)
		}
	}
	if n := f.svc.cache.len(); n != 0 {
		t.Errorf("got %d cached decisions after refusals, want 0", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	now := time.Now()
	for _, size := range []int{1, 16, 100, 1000} {
		c := newCache(size, time.Minute)
		d := &Decision{ExpiresAt: now.Add(time.Hour)}
		for i := range 20 * size {
			k, ok := c.key(&Request{IDToken: strings.Repeat("x", i+1)}, "rev")
			if !ok {
				t.Fatal("key: got not ok, want ok")
			}
			c.put(k, d, now)
		}
		// Each shard holds ceil(size/shards) entries.
		limit := cacheShards * max(1, (size+cacheShards-1)/cacheShards)
		if n := c.len(); n > limit || n == 0 {
			t.Errorf("size %d: got %d entries, want between 1 and %d", size, n, limit)
		}
	}
}
