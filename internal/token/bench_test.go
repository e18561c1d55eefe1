package token

import (
	"context"
	"testing"
)

func benchmarkVerify(b *testing.B, kid, alg string, cacheSize int) {
	ks := keys(b)
	p := newTestIdP(b, kid)
	v := startVerifier(b, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}, GroupsClaim: "groups"}},
		Options{CacheSize: cacheSize}, p.issuer)
	raw := mint(b, ks[kid], alg, nil, claims(p.issuer, map[string]any{
		"groups": []string{"Data Engineers", "Analytics Users"}, "department": "Finance",
		"given_name": "Alice", "family_name": "Smith",
	}))
	ctx := context.Background()
	if _, err := v.Verify(ctx, raw); err != nil {
		b.Fatalf("got error %v, want none", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRS256 measures a full RS256 verification, cache disabled.
func BenchmarkVerifyRS256(b *testing.B) { benchmarkVerify(b, "rs1", "RS256", -1) }

// BenchmarkVerifyES256 measures a full ES256 verification, cache disabled.
func BenchmarkVerifyES256(b *testing.B) { benchmarkVerify(b, "ec1", "ES256", -1) }

// BenchmarkVerifyCached measures a verification answered by the cache.
func BenchmarkVerifyCached(b *testing.B) { benchmarkVerify(b, "rs1", "RS256", DefaultCacheSize) }
