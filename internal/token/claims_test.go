package token

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
)

// loadClaims reads a claim set of a real identity provider from
// testdata/idp-claims (copied from /work/shared/idp-claims) and re-targets
// it at the test issuer with fresh dates. It returns the claims and the
// file's own aud, to configure as the accepted audience.
func loadClaims(t *testing.T, file, iss string) (map[string]any, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "idp-claims", file))
	if err != nil {
		t.Fatalf("read claims: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	now := time.Now()
	c["iss"] = iss
	c["iat"] = now.Unix()
	c["exp"] = now.Add(time.Hour).Unix()
	if _, ok := c["nbf"]; ok {
		c["nbf"] = now.Unix()
	}
	aud, _ := c["aud"].(string)
	return c, aud
}

func TestIdentityProviderClaimShapes(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")

	tests := []struct {
		name  string
		file  string
		cfg   IssuerConfig // Issuer and Audiences are filled in
		over  map[string]any
		want  Identity
		check func(t *testing.T, id *Identity)
	}{
		{
			name: "cognito",
			file: "cognito.json",
			cfg:  IssuerConfig{GroupsClaim: "cognito:groups", RequiredClaims: map[string]string{"token_use": "id"}},
			want: Identity{
				Subject: "6b1f0c2e-8d3a-4c55-9d0e-1f2a3b4c5d6e", Username: "alice@example.com",
				Email: "alice@example.com", FirstName: "Alice", LastName: "Smith",
				Groups: []string{"Data Engineers", "Analytics Users"},
			},
			check: func(t *testing.T, id *Identity) {
				// Policy input needs exact numbers and custom claims as they are.
				if got, want := id.Claims["auth_time"], json.Number("1764763200"); got != want {
					t.Errorf("got auth_time %#v, want %#v", got, want)
				}
				if got := id.Claims["custom:department"]; got != "Finance" {
					t.Errorf("got custom:department %#v, want %q", got, "Finance")
				}
			},
		},
		{
			name: "cognito with cognito:username as the username",
			file: "cognito.json",
			cfg: IssuerConfig{
				GroupsClaim: "cognito:groups", UsernameClaim: "cognito:username",
				RequiredClaims: map[string]string{"token_use": "id"},
			},
			want: Identity{
				Subject: "6b1f0c2e-8d3a-4c55-9d0e-1f2a3b4c5d6e", Username: "alice",
				Email: "alice@example.com", FirstName: "Alice", LastName: "Smith",
				Groups: []string{"Data Engineers", "Analytics Users"},
			},
		},
		{
			name: "okta",
			file: "okta.json",
			want: Identity{
				Subject: "00u1a2b3c4d5e6f7g8h9", Username: "bob@example.com", Email: "bob@example.com",
				FirstName: "Bob", LastName: "Jones", Groups: []string{"Everyone", "Analytics Users"},
			},
		},
		{
			name: "entra",
			file: "entra.json",
			cfg:  IssuerConfig{UsernameClaim: "preferred_username"},
			want: Identity{
				Subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", Username: "carol@example.onmicrosoft.com",
				Email: "carol@example.com", FirstName: "Carol", LastName: "White",
				Groups: []string{"2b9f1c3e-5d7a-4e8b-9c0d-1e2f3a4b5c6d", "8a7b6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d"},
			},
		},
		{
			name: "entra app roles as groups",
			file: "entra.json",
			cfg:  IssuerConfig{GroupsClaim: "roles", UsernameClaim: "preferred_username"},
			want: Identity{
				Subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", Username: "carol@example.onmicrosoft.com",
				Email: "carol@example.com", FirstName: "Carol", LastName: "White",
				Groups: []string{"Superset.Analyst"},
			},
		},
		{
			name: "entra group overage",
			file: "entra-overage.json",
			want: Identity{
				Subject: "BBBBBBBBBBBBBBBBBBBBBJlarGWsTbTbGIz893ccubR", Username: "dan@example.onmicrosoft.com",
				FirstName: "Dan", LastName: "Brown", Groups: []string{}, GroupsOverage: true,
			},
		},
		{
			name: "entra implicit-flow overage",
			file: "entra.json",
			over: map[string]any{"groups": del, "hasgroups": true},
			want: Identity{
				Subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", Username: "carol@example.com",
				Email: "carol@example.com", FirstName: "Carol", LastName: "White",
				Groups: []string{}, GroupsOverage: true,
			},
		},
		{
			name: "keycloak realm roles",
			file: "keycloak.json",
			cfg:  IssuerConfig{GroupsClaim: "realm_access.roles"},
			want: Identity{
				Subject: "f:3e4d5c6b-7a8f-4e9d-0c1b-2a3f4e5d6c7b:erin", Username: "erin@example.com",
				Email: "erin@example.com", FirstName: "Erin", LastName: "Green",
				Groups: []string{"offline_access", "uma_authorization", "superset-alpha"},
			},
		},
		{
			name: "keycloak groups with full paths",
			file: "keycloak.json",
			cfg:  IssuerConfig{GroupsClaim: "groups", UsernameClaim: "preferred_username"},
			want: Identity{
				Subject: "f:3e4d5c6b-7a8f-4e9d-0c1b-2a3f4e5d6c7b:erin", Username: "erin",
				Email: "erin@example.com", FirstName: "Erin", LastName: "Green",
				Groups: []string{"/Data Engineers", "/analytics/EU"},
			},
		},
		{
			name: "google",
			file: "google.json",
			want: Identity{
				Subject: "10769150350006150715113082367", Username: "frank@example.com",
				Email: "frank@example.com", FirstName: "Frank", LastName: "Black", Groups: []string{},
			},
		},
		{
			name: "unverified email is not the username",
			file: "google.json",
			over: map[string]any{"email_verified": false},
			want: Identity{
				Subject: "10769150350006150715113082367", Username: "10769150350006150715113082367",
				Email: "frank@example.com", FirstName: "Frank", LastName: "Black", Groups: []string{},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, aud := loadClaims(t, tt.file, p.issuer)
			for k, v := range tt.over {
				if v == del {
					delete(c, k)
				} else {
					c[k] = v
				}
			}
			cfg := tt.cfg
			cfg.Issuer, cfg.Audiences = p.issuer, []string{aud}
			v := startVerifier(t, []IssuerConfig{cfg}, Options{}, p.issuer)

			id, err := v.Verify(context.Background(), mint(t, ks["rs1"], "RS256", nil, c))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			want := tt.want
			want.Issuer = p.issuer
			if diff := cmp.Diff(want, *id, cmpopts.IgnoreFields(Identity{}, "Claims", "Expiry")); diff != "" {
				t.Errorf("identity mismatch (-want +got):\n%s", diff)
			}
			if got, want := id.Expiry.Unix(), c["exp"].(int64); got != want {
				t.Errorf("got expiry %d, want %d", got, want)
			}
			if tt.check != nil {
				tt.check(t, id)
			}
		})
	}

	t.Run("cognito access token refused", func(t *testing.T) {
		c, aud := loadClaims(t, "cognito.json", p.issuer)
		c["token_use"] = "access"
		v := startVerifier(t, []IssuerConfig{{
			Issuer: p.issuer, Audiences: []string{aud}, GroupsClaim: "cognito:groups",
			RequiredClaims: map[string]string{"token_use": "id"},
		}}, Options{}, p.issuer)
		_, err := v.Verify(context.Background(), mint(t, ks["rs1"], "RS256", nil, c))
		wantRefusal(t, err, ReasonClaim, `"token_use" is "access", want "id"`)
	})
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func TestVerifiedTokenCache(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	start := time.Now()
	clock := &fakeClock{now: start}
	reg := prometheus.NewRegistry()
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{Now: clock.Now, ClockSkew: time.Minute, CacheSize: 2, Registerer: reg}, p.issuer)
	ctx := context.Background()
	exp := start.Add(10 * time.Minute)
	raw := mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, map[string]any{"exp": exp.Unix()}))
	hits := func() float64 { return counterValue(v.metrics.cacheHits) }

	first, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	second, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("got error %v on the cached token, want none", err)
	}
	if first != second || hits() != 1 {
		t.Errorf("got %v cache hits and a new identity %v, want 1 hit returning the cached identity", hits(), first != second)
	}

	// Past exp but within the skew, the entry is dropped and the token is
	// verified afresh (and accepted) but not cached again.
	clock.set(time.Unix(exp.Unix(), 0).Add(30 * time.Second))
	if _, err := v.Verify(ctx, raw); err != nil {
		t.Fatalf("got error %v within the skew, want none", err)
	}
	if got := hits(); got != 1 {
		t.Errorf("got %v cache hits after exp, want still 1", got)
	}
	if got := v.cache.Len(); got != 0 {
		t.Errorf("got %d cache entries after exp, want 0", got)
	}

	// A cached token must expire with its exp, cache or not.
	clock.set(start)
	if _, err := v.Verify(ctx, raw); err != nil {
		t.Fatal(err)
	}
	clock.set(exp.Add(2 * time.Minute))
	_, err = v.Verify(ctx, raw)
	wantRefusal(t, err, ReasonExpired, "token expired at")

	// Failures are never cached.
	clock.set(start)
	bad := mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, map[string]any{"aud": "grafana"}))
	for range 2 {
		_, err := v.Verify(ctx, bad)
		wantRefusal(t, err, ReasonAudience, "grafana")
	}
	if got := v.cache.Len(); got != 0 {
		t.Errorf("got %d cache entries after failures, want 0", got)
	}

	// The cache is bounded.
	for i := range 3 {
		if _, err := v.Verify(ctx, mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, map[string]any{"jti": i}))); err != nil {
			t.Fatal(err)
		}
	}
	if got := v.cache.Len(); got != 2 {
		t.Errorf("got %d cache entries, want the bound 2", got)
	}
}

func TestVerificationMetrics(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	reg := prometheus.NewPedanticRegistry()
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{Registerer: reg}, p.issuer)
	ctx := context.Background()
	_, _ = v.Verify(ctx, mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, nil)))
	_, _ = v.Verify(ctx, mint(t, ks["rs1"], "RS256", nil, claims(p.issuer, map[string]any{"exp": 1})))
	_, _ = v.Verify(ctx, mint(t, ks["rs1"], "RS256", nil, claims("https://unknown.example.com", nil)))
	_, _ = v.Verify(ctx, "garbage")

	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{name: "expired", metric: "authzd_token_verifications_total", labels: []string{p.issuer, "TOKEN_EXPIRED", "refused"}, want: 1},
		{name: "ok", metric: "authzd_token_verifications_total", labels: []string{p.issuer, "", "ok"}, want: 1},
		{name: "unknown issuer has no issuer label", metric: "authzd_token_verifications_total", labels: []string{"", "UNKNOWN_ISSUER", "refused"}, want: 1},
		{name: "malformed", metric: "authzd_token_verifications_total", labels: []string{"", "TOKEN_MALFORMED", "refused"}, want: 1},
		{name: "fetch", metric: "authzd_token_key_fetches_total", labels: []string{p.issuer, "success"}, want: 1},
		{name: "keys", metric: "authzd_token_keys", labels: []string{p.issuer}, want: 1},
		{name: "up", metric: "authzd_token_issuer_up", labels: []string{p.issuer}, want: 1},
		{name: "cache entries", metric: "authzd_token_cache_entries", want: 1},
		{name: "cache misses", metric: "authzd_token_cache_misses_total", want: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := gathered(t, reg, tt.metric, tt.labels...)
			if !ok || got != tt.want {
				t.Errorf("got %s%q = %v (present %v), want %v", tt.metric, tt.labels, got, ok, tt.want)
			}
		})
	}
	if _, ok := gathered(t, reg, "authzd_token_key_age_seconds", p.issuer); !ok {
		t.Errorf("got no authzd_token_key_age_seconds for %q, want one", p.issuer)
	}
}
