package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// This file holds a small identity provider for tests: real HTTP over
// loopback serving discovery and a JWKS, with keys and tokens made by
// go-jose directly, independent of the code under test.

// testKey is a signing key and its JWK id.
type testKey struct {
	kid  string
	priv crypto.Signer
	use  string // "" or "enc"
	alg  string // the JWK's alg, "" for none
}

func (k *testKey) publicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Use: k.use, Algorithm: k.alg}
}

var (
	keysOnce sync.Once
	keyPool  map[string]*testKey
)

// keys returns test keys made once per test binary, since RSA key
// generation is slow under the race detector.
func keys(t testing.TB) map[string]*testKey {
	t.Helper()
	keysOnce.Do(func() {
		rsaKey := func() *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return k
		}
		ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		keyPool = map[string]*testKey{
			"rs1":      {kid: "rs1", priv: rsaKey()},
			"rs2":      {kid: "rs2", priv: rsaKey()},
			"ps1":      {kid: "ps1", priv: rsaKey(), alg: "PS256"},
			"ec1":      {kid: "ec1", priv: ecKey(elliptic.P256())},
			"ec384":    {kid: "ec384", priv: ecKey(elliptic.P384())},
			"ec521":    {kid: "ec521", priv: ecKey(elliptic.P521())},
			"ed1":      {kid: "ed1", priv: ed},
			"enc1":     {kid: "enc1", priv: rsaKey(), use: "enc"},
			"other1":   {kid: "other1", priv: rsaKey()},
			"attacker": {kid: "attacker", priv: rsaKey()},
		}
	})
	return keyPool
}

// testIdP serves an OIDC discovery document and a JWKS over loopback.
type testIdP struct {
	srv    *httptest.Server
	issuer string

	mu           sync.Mutex
	keys         []*testKey
	cacheControl string
	docIssuer    string // when set, the discovery document names this issuer

	fail          atomic.Bool
	jwksHits      atomic.Int64
	discoveryHits atomic.Int64
}

func newTestIdP(t testing.TB, kids ...string) *testIdP {
	t.Helper()
	p := &testIdP{}
	ks := keys(t)
	for _, kid := range kids {
		p.keys = append(p.keys, ks[kid])
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realm/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoveryHits.Add(1)
		if p.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		iss := p.issuer
		if p.docIssuer != "" {
			iss = p.docIssuer
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              p.srv.URL + "/realm/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /realm/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		if p.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range p.keys {
			set.Keys = append(set.Keys, k.publicJWK())
		}
		cc := p.cacheControl
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.issuer = p.srv.URL + "/realm"
	return p
}

// setKeys replaces the published key set.
func (p *testIdP) setKeys(t testing.TB, kids ...string) {
	t.Helper()
	ks := keys(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = nil
	for _, kid := range kids {
		p.keys = append(p.keys, ks[kid])
	}
}

// del marks a claim to be removed by claims.
const del = "\x00delete"

// claims returns a valid claim set for iss, with over applied on top.
func claims(iss string, over map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":   iss,
		"aud":   "superset",
		"sub":   "alice-sub",
		"email": "alice@example.com",
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	}
	for k, v := range over {
		if v == del {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// mint signs claims with key under alg, adding extra protected headers.
// It uses go-jose directly, not the code under test.
func mint(t testing.TB, key *testKey, alg string, hdr map[string]any, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range hdr {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	if _, ok := hdr["embed-jwk"]; ok {
		delete(opts.ExtraHeaders, "embed-jwk")
		opts.EmbedJWK = true
	}
	var signingKey any = jose.JSONWebKey{Key: key.priv, KeyID: key.kid}
	if opts.EmbedJWK {
		signingKey = key.priv
		opts = opts.WithHeader("kid", key.kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: signingKey}, opts)
	if err != nil {
		t.Fatalf("new signer: %v", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal claims: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return raw
}

// startVerifier builds a verifier, starts it, stops it at the end of the
// test, and waits until the issuers named in ready have keys.
func startVerifier(t testing.TB, cfgs []IssuerConfig, opts Options, ready ...string) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfgs, opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v.Start(ctx)
	waitFor(t, "issuer keys", func() bool {
		for _, st := range v.Status() {
			for _, r := range ready {
				if st.Issuer == r && !st.Ready {
					return false
				}
			}
		}
		return true
	})
	return v
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline, so that tests stay deterministic on a loaded machine.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// count returns how many log lines have level and msg.
func (s *syncBuffer) count(level, msg string) int {
	n := 0
	for line := range strings.Lines(s.String()) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == level && rec.Msg == msg {
			n++
		}
	}
	return n
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
