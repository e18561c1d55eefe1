package token

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// wantRefusal checks that err is an *Error with reason want whose message
// contains msg.
func wantRefusal(t *testing.T, err error, want Reason, msg string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want *Error with reason %s", err, err, want)
	}
	if e.Reason != want {
		t.Fatalf("got reason %s (%q), want %s", e.Reason, e.Message, want)
	}
	if !strings.Contains(e.Message, msg) {
		t.Errorf("got message %q, want it to contain %q", e.Message, msg)
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// selfSigned returns a DER certificate for key, as an attacker would put in
// an x5c header.
func selfSigned(t *testing.T, key *testKey) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "attacker"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.priv.Public(), key.priv)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestVerify(t *testing.T) {
	ks := keys(t)
	a := newTestIdP(t, "rs1", "ec1", "ed1", "ps1", "enc1")
	b := newTestIdP(t, "other1")
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		var set jose.JSONWebKeySet
		set.Keys = append(set.Keys, ks["attacker"].publicJWK())
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer attacker.Close()

	cfgs := []IssuerConfig{
		{Issuer: a.issuer, Audiences: []string{"superset", "superset-2"}},
		{
			Issuer: b.issuer, Audiences: []string{"superset"}, Algorithms: []string{"RS256"},
			RequiredClaims: map[string]string{"token_use": "id"},
		},
	}
	v := startVerifier(t, cfgs, Options{ClockSkew: time.Minute, CacheSize: -1}, a.issuer, b.issuer)

	now := time.Now()
	ok := func(over map[string]any) map[string]any { return claims(a.issuer, over) }
	rs := func(over map[string]any) string { return mint(t, ks["rs1"], "RS256", nil, ok(over)) }
	goodB := map[string]any{"token_use": "id"}
	tampered := func() string {
		parts := strings.Split(rs(nil), ".")
		parts[1] = b64(`{"iss":"` + a.issuer + `","aud":"superset","sub":"mallory","exp":` +
			jsonNum(now.Add(time.Hour).Unix()) + `}`)
		return strings.Join(parts, ".")
	}
	hdrRS := b64(`{"alg":"RS256","kid":"rs1"}`)
	pubDER, err := x509.MarshalPKIXPublicKey(ks["rs1"].priv.Public())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		token  func() string
		want   Reason // "" means the token verifies
		msg    string
		issuer string
	}{
		{name: "RS256", token: func() string { return rs(nil) }},
		{name: "ES256", token: func() string { return mint(t, ks["ec1"], "ES256", nil, ok(nil)) }},
		{name: "EdDSA", token: func() string { return mint(t, ks["ed1"], "EdDSA", nil, ok(nil)) }},
		{name: "PS256 with a PS256 key", token: func() string { return mint(t, ks["ps1"], "PS256", nil, ok(nil)) }},
		{name: "PS256 with an RSA key naming no alg", token: func() string { return mint(t, ks["rs1"], "PS256", nil, ok(nil)) }},
		{name: "second issuer", token: func() string {
			return mint(t, ks["other1"], "RS256", nil, claims(b.issuer, goodB))
		}, issuer: b.issuer},
		{name: "several audiences with an accepted azp", token: func() string {
			return rs(map[string]any{"aud": []string{"superset", "grafana"}, "azp": "superset"})
		}},
		{name: "expired within the clock skew", token: func() string {
			return rs(map[string]any{"exp": now.Add(-30 * time.Second).Unix()})
		}},
		{name: "nbf within the clock skew", token: func() string {
			return rs(map[string]any{"nbf": now.Add(30 * time.Second).Unix()})
		}},
		{name: "fractional dates", token: func() string {
			return rs(map[string]any{"exp": float64(now.Add(time.Hour).Unix()) + 0.5, "iat": 1.5e9})
		}},

		{name: "empty", token: func() string { return "" }, want: ReasonMalformed, msg: "token is empty"},
		{name: "one part", token: func() string { return "not-a-token" }, want: ReasonMalformed, msg: "three"},
		{name: "two parts", token: func() string { return hdrRS + ".e30" }, want: ReasonMalformed, msg: "three"},
		{name: "four parts", token: func() string { return rs(nil) + ".x" }, want: ReasonMalformed, msg: "three"},
		{name: "header not base64url", token: func() string { return "!!!." + b64("{}") + ".c2ln" }, want: ReasonMalformed, msg: "header"},
		{name: "header a JSON array", token: func() string { return b64("[1]") + ".e30.c2ln" }, want: ReasonMalformed, msg: "header"},
		{name: "payload not JSON", token: func() string { return hdrRS + "." + b64("not json") + ".c2ln" }, want: ReasonMalformed, msg: "payload"},
		{name: "JWS JSON serialization", token: func() string {
			return `{"payload":"e30","protected":"` + hdrRS + `","signature":"c2ln"}`
		}, want: ReasonMalformed, msg: "three"},
		{name: "signature not base64url", token: func() string {
			p := strings.Split(rs(nil), ".")
			return p[0] + "." + p[1] + ".***"
		}, want: ReasonMalformed, msg: "malformed"},
		{name: "too long", token: func() string { return strings.Repeat("a", DefaultMaxTokenBytes+1) }, want: ReasonMalformed, msg: "more than"},
		{name: "alg none", token: func() string {
			return b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(mustJSON(t, ok(nil))) + "."
		}, want: ReasonAlgorithm, msg: `"none"`},
		{name: "HS256 keyed with the issuer's public key", token: func() string {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER},
				(&jose.SignerOptions{}).WithHeader("kid", "rs1"))
			if err != nil {
				t.Fatal(err)
			}
			jws, err := signer.Sign([]byte(mustJSON(t, ok(nil))))
			if err != nil {
				t.Fatal(err)
			}
			s, _ := jws.CompactSerialize()
			return s
		}, want: ReasonAlgorithm, msg: `"HS256" is never allowed`},
		{name: "unknown alg", token: func() string {
			return b64(`{"alg":"XX999","kid":"rs1"}`) + "." + b64(mustJSON(t, ok(nil))) + ".c2ln"
		}, want: ReasonAlgorithm, msg: "not supported"},
		{name: "alg outside the issuer's allow-list", token: func() string {
			return mint(t, ks["other1"], "PS256", nil, claims(b.issuer, goodB))
		}, want: ReasonAlgorithm, msg: `"PS256" is not allowed for issuer`},
		{name: "alg outside the default allow-list", token: func() string {
			return mint(t, ks["rs1"], "RS384", nil, ok(nil))
		}, want: ReasonAlgorithm, msg: `"RS384" is not allowed`},
		{name: "ES256 header on an RSA key", token: func() string {
			return mint(t, ks["ec1"], "ES256", map[string]any{"kid": "rs1"}, ok(nil))
		}, want: ReasonAlgorithm, msg: `does not match key "rs1"`},
		{name: "RS256 on a key whose JWK says PS256", token: func() string {
			return mint(t, ks["ps1"], "RS256", nil, ok(nil))
		}, want: ReasonAlgorithm, msg: `does not match key "ps1"`},
		{name: "unknown crit header", token: func() string {
			return mint(t, ks["rs1"], "RS256", map[string]any{"crit": []string{"exp"}, "exp": 1}, ok(nil))
		}, want: ReasonMalformed, msg: "critical"},
		{name: "b64 header", token: func() string {
			return mint(t, ks["rs1"], "RS256", map[string]any{"b64": true}, ok(nil))
		}, want: ReasonMalformed, msg: "b64"},
		{name: "access token type", token: func() string {
			return mint(t, ks["rs1"], "RS256", map[string]any{"typ": "at+jwt"}, ok(nil))
		}, want: ReasonMalformed, msg: "access token"},
		{name: "embedded jwk with its own kid", token: func() string {
			return mint(t, ks["attacker"], "RS256", map[string]any{"embed-jwk": true}, ok(nil))
		}, want: ReasonUnknownKey, msg: `"attacker"`},
		{name: "embedded jwk under a trusted kid", token: func() string {
			k := *ks["attacker"]
			k.kid = "rs1"
			return mint(t, &k, "RS256", map[string]any{"embed-jwk": true}, ok(nil))
		}, want: ReasonBadSignature, msg: `key "rs1"`},
		{name: "jku header", token: func() string {
			return mint(t, ks["attacker"], "RS256", map[string]any{"jku": attacker.URL}, ok(nil))
		}, want: ReasonUnknownKey, msg: `"attacker"`},
		{name: "x5u header", token: func() string {
			return mint(t, ks["attacker"], "RS256", map[string]any{"x5u": attacker.URL}, ok(nil))
		}, want: ReasonUnknownKey, msg: `"attacker"`},
		{name: "x5c header under a trusted kid", token: func() string {
			k := *ks["attacker"]
			k.kid = "rs1"
			return mint(t, &k, "RS256", map[string]any{"x5c": []string{selfSigned(t, ks["attacker"])}}, ok(nil))
		}, want: ReasonBadSignature, msg: `key "rs1"`},
		{name: "key marked for encryption", token: func() string {
			return mint(t, ks["enc1"], "RS256", nil, ok(nil))
		}, want: ReasonUnknownKey, msg: `"enc1"`},
		{name: "tampered payload", token: tampered, want: ReasonBadSignature, msg: "signature does not verify"},
		{name: "signature of another token", token: func() string {
			p, q := strings.Split(rs(nil), "."), strings.Split(rs(map[string]any{"sub": "x"}), ".")
			return p[0] + "." + p[1] + "." + q[2]
		}, want: ReasonBadSignature, msg: "signature"},
		{name: "unknown issuer", token: func() string {
			return rs(map[string]any{"iss": "https://evil.example.com"})
		}, want: ReasonUnknownIssuer, msg: `"https://evil.example.com" is not trusted`},
		{name: "issuer with a trailing slash", token: func() string {
			return rs(map[string]any{"iss": a.issuer + "/"})
		}, want: ReasonUnknownIssuer, msg: "not trusted"},
		{name: "iss not a string", token: func() string { return rs(map[string]any{"iss": 7}) }, want: ReasonMalformed, msg: "iss"},
		{name: "iss missing", token: func() string { return rs(map[string]any{"iss": del}) }, want: ReasonMalformed, msg: "iss"},
		{name: "issuer A claimed, signed with issuer B's key", token: func() string {
			return mint(t, ks["other1"], "RS256", nil, ok(nil))
		}, want: ReasonUnknownKey, msg: `"other1"`},
		{name: "wrong audience", token: func() string { return rs(map[string]any{"aud": "grafana"}) },
			want: ReasonAudience, msg: `audience ["grafana"] does not contain an accepted audience ["superset" "superset-2"]`},
		{name: "no audience", token: func() string { return rs(map[string]any{"aud": del}) }, want: ReasonAudience, msg: "aud"},
		{name: "audience of numbers", token: func() string { return rs(map[string]any{"aud": []int{1}}) }, want: ReasonAudience, msg: "aud"},
		{name: "several audiences without azp", token: func() string {
			return rs(map[string]any{"aud": []string{"superset", "grafana"}})
		}, want: ReasonAudience, msg: "no azp"},
		{name: "several audiences with a foreign azp", token: func() string {
			return rs(map[string]any{"aud": []string{"superset", "grafana"}, "azp": "grafana"})
		}, want: ReasonAudience, msg: `azp) "grafana"`},
		{name: "no exp", token: func() string { return rs(map[string]any{"exp": del}) }, want: ReasonMalformed, msg: "no exp"},
		{name: "exp a string", token: func() string { return rs(map[string]any{"exp": "tomorrow"}) }, want: ReasonMalformed, msg: `"exp" is not a number`},
		{name: "exp absurdly large", token: func() string { return rs(map[string]any{"exp": 1e300}) }, want: ReasonMalformed, msg: "not a valid date"},
		{name: "expired", token: func() string {
			return rs(map[string]any{"exp": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix()})
		}, want: ReasonExpired, msg: "token expired at 2026-01-02T03:04:05Z"},
		{name: "not yet valid", token: func() string {
			return rs(map[string]any{"nbf": now.Add(10 * time.Minute).Unix()})
		}, want: ReasonNotYetValid, msg: "not valid before"},
		{name: "issued in the future", token: func() string {
			return rs(map[string]any{"iat": now.Add(10 * time.Minute).Unix()})
		}, want: ReasonNotYetValid, msg: "issued in the future"},
		{name: "no sub", token: func() string { return rs(map[string]any{"sub": del}) }, want: ReasonMalformed, msg: "sub"},
		{name: "required claim missing", token: func() string {
			return mint(t, ks["other1"], "RS256", nil, claims(b.issuer, nil))
		}, want: ReasonClaim, msg: `"token_use" is missing`},
		{name: "required claim differs", token: func() string {
			return mint(t, ks["other1"], "RS256", nil, claims(b.issuer, map[string]any{"token_use": "access"}))
		}, want: ReasonClaim, msg: `claim "token_use" is "access", want "id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.token()
			id, err := v.Verify(context.Background(), raw)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				want := a.issuer
				if tt.issuer != "" {
					want = tt.issuer
				}
				if id.Issuer != want {
					t.Errorf("got issuer %q, want %q", id.Issuer, want)
				}
				return
			}
			wantRefusal(t, err, tt.want, tt.msg)
			if len(raw) > 40 && strings.Contains(err.Error(), raw[len(raw)-40:]) {
				t.Errorf("error message %q quotes the token", err.Error())
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("got %d requests to the jku/x5u server, want 0", n)
	}
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSecondIssuerRefusedByFirstConfig(t *testing.T) {
	ks := keys(t)
	a := newTestIdP(t, "rs1")
	b := newTestIdP(t, "other1")
	v := startVerifier(t, []IssuerConfig{{Issuer: a.issuer, Audiences: []string{"superset"}}}, Options{}, a.issuer)

	_, err := v.Verify(context.Background(), mint(t, ks["other1"], "RS256", nil, claims(b.issuer, nil)))
	wantRefusal(t, err, ReasonUnknownIssuer, b.issuer)
	if got := b.jwksHits.Load() + b.discoveryHits.Load(); got != 0 {
		t.Errorf("got %d requests to the untrusted issuer, want 0", got)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()

	tests := []struct {
		name    string
		cfgs    []IssuerConfig
		opts    Options
		wantErr []string
	}{
		{name: "valid http issuer", cfgs: []IssuerConfig{{Issuer: srv.URL + "/dev", Audiences: []string{"superset"}}}},
		{name: "no issuers", wantErr: []string{"at least one issuer"}},
		{
			name: "every problem at once",
			cfgs: []IssuerConfig{
				{Issuer: "", Audiences: nil},
				{Issuer: "ftp://idp", Audiences: []string{""}, JWKSURL: "jwks", Algorithms: []string{"HS256", "none", "RS256"}},
				{Issuer: "https://a", Audiences: []string{"x"}},
				{Issuer: "https://a", Audiences: []string{"x"}, RequiredClaims: map[string]string{"": "x"}},
			},
			opts: Options{RetryMin: time.Hour, RetryMax: time.Second, RefetchInterval: -1},
			wantErr: []string{
				`issuers[0] "": issuer: is required`,
				`issuers[0] "": audiences: at least one audience is required`,
				`issuers[1] "ftp://idp": issuer "ftp://idp" must be an http or https URL`,
				`issuers[1] "ftp://idp": audiences: an audience is empty`,
				`issuers[1] "ftp://idp": jwks_url "jwks" must be an http or https URL`,
				`issuers[1] "ftp://idp": algorithms: "HS256" is not an allowed algorithm`,
				`issuers[1] "ftp://idp": algorithms: "none" is not an allowed algorithm`,
				`issuers[3] "https://a": required_claims: a claim name is empty`,
				`options: retry min "1h0m0s" exceeds retry max "1s"`,
				`options: refetch interval "-1ns" is negative`,
			},
		},
		{
			name: "duplicate issuer",
			cfgs: []IssuerConfig{
				{Issuer: "https://a", Audiences: []string{"x"}},
				{Issuer: "https://a", Audiences: []string{"y"}},
			},
			wantErr: []string{`issuers[1] "https://a": issuer is configured twice`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.cfgs, tt.opts)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if v.Ready() {
					t.Errorf("got Ready() true before Start, want false")
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("got %d HTTP requests from NewVerifier, want 0", n)
	}
}

func TestLookup(t *testing.T) {
	var c map[string]any
	if err := json.Unmarshal([]byte(`{
		"cognito:groups": ["a", "b"],
		"realm_access": {"roles": ["r1"]},
		"a.b": "literal",
		"a": {"b": "nested"},
		"groups": "single",
		"mixed": ["x", 1, "y"]
	}`), &c); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want []string
	}{
		{name: "key with a colon", path: "cognito:groups", want: []string{"a", "b"}},
		{name: "nested path", path: "realm_access.roles", want: []string{"r1"}},
		{name: "full key wins over the path", path: "a.b", want: []string{"literal"}},
		{name: "string is one group", path: "groups", want: []string{"single"}},
		{name: "non-strings are skipped", path: "mixed", want: []string{"x", "y"}},
		{name: "missing", path: "nope.nope", want: []string{}},
		{name: "path through a non-object", path: "groups.x", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, groups(c, tt.path)); diff != "" {
				t.Errorf("groups(%q) mismatch (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestMaxAge(t *testing.T) {
	v, err := NewVerifier([]IssuerConfig{{Issuer: "https://a", Audiences: []string{"x"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cc   string
		want time.Duration
	}{
		{name: "none", cc: "", want: time.Hour},
		{name: "google", cc: "public, max-age=19867, must-revalidate, no-transform", want: 19867 * time.Second},
		{name: "below the minimum", cc: "max-age=5", want: time.Minute},
		{name: "above the maximum", cc: "max-age=9999999", want: 24 * time.Hour},
		{name: "no-store", cc: "no-store", want: time.Minute},
		{name: "zero", cc: "max-age=0", want: time.Minute},
		{name: "garbage", cc: "max-age=soon", want: time.Hour},
		{name: "quoted", cc: `max-age="120"`, want: 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := v.refreshAfter(maxAge(tt.cc)); got != tt.want {
				t.Errorf("got refresh after %v for %q, want %v", got, tt.cc, tt.want)
			}
		})
	}
}
