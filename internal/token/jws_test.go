package token

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

// allAlgorithms allows every supported algorithm.
var allAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

// algKeys names a test key for every supported algorithm.
var algKeys = []struct{ alg, kid string }{
	{"RS256", "rs1"}, {"RS384", "rs1"}, {"RS512", "rs1"},
	{"PS256", "ps1"}, {"PS256", "rs1"}, {"PS384", "rs1"}, {"PS512", "rs1"},
	{"ES256", "ec1"}, {"ES384", "ec384"}, {"ES512", "ec521"},
	{"EdDSA", "ed1"},
}

// allAlgorithmsVerifier starts a verifier that trusts p with every
// supported algorithm.
func allAlgorithmsVerifier(t testing.TB, p *testIdP, opts Options) *Verifier {
	t.Helper()
	return startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}, Algorithms: allAlgorithms}},
		opts, p.issuer)
}

// split decodes the three segments of a compact JWS.
func split(t *testing.T, raw string) (hdr, payload, sig []byte) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("got %d parts, want 3", len(parts))
	}
	var out [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			t.Fatalf("decode part %d: %v", i, err)
		}
		out[i] = b
	}
	return out[0], out[1], out[2]
}

// join encodes three segments as a compact JWS.
func join(hdr, payload, sig []byte) string {
	e := base64.RawURLEncoding
	return e.EncodeToString(hdr) + "." + e.EncodeToString(payload) + "." + e.EncodeToString(sig)
}

// flipBit returns a copy of b with the lowest bit of the byte at i flipped.
func flipBit(b []byte, i int) []byte {
	out := bytes.Clone(b)
	out[i] ^= 0x01
	return out
}

// signCompact signs header and payload, both JSON text, with the standard
// library: the test's own signer, independent of go-jose and of the code
// under test. pss sets the RSASSA-PSS salt length.
func signCompact(t *testing.T, key *testKey, alg, header, payload string, pss int) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	var sig []byte
	var err error
	h := hashOf(alg)
	digest := signatureDigest(alg, []byte(input))
	switch k := key.priv.(type) {
	case *rsa.PrivateKey:
		if strings.HasPrefix(alg, "PS") {
			sig, err = rsa.SignPSS(rand.Reader, k, h, digest, &rsa.PSSOptions{SaltLength: pss})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, digest)
		}
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		r, s, serr := ecdsa.Sign(rand.Reader, k, digest)
		err = serr
		sig = make([]byte, 2*size)
		if err == nil {
			r.FillBytes(sig[:size])
			s.FillBytes(sig[size:])
		}
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestSignatureTampering(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1", "ps1", "ec1", "ec384", "ec521", "ed1")
	v := allAlgorithmsVerifier(t, p, Options{CacheSize: -1})
	ctx := context.Background()

	for _, ak := range algKeys {
		t.Run(ak.alg+" "+ak.kid, func(t *testing.T) {
			valid := mint(t, ks[ak.kid], ak.alg, nil, claims(p.issuer, nil))
			if _, err := v.Verify(ctx, valid); err != nil {
				t.Fatalf("got error %v for the untampered token, want none", err)
			}
			hdr, payload, sig := split(t, valid)
			typ := bytes.Index(hdr, []byte(`"JWT"`)) + 3 // the T of JWT
			sub := bytes.Index(payload, []byte(`alice-sub`))
			if typ < 3 || sub < 0 {
				t.Fatalf("header %s or payload %s lacks the bytes to flip", hdr, payload)
			}
			tests := []struct {
				name  string
				token string
			}{
				{name: "first signature byte", token: join(hdr, payload, flipBit(sig, 0))},
				{name: "middle signature byte", token: join(hdr, payload, flipBit(sig, len(sig)/2))},
				{name: "last signature byte", token: join(hdr, payload, flipBit(sig, len(sig)-1))},
				{name: "payload", token: join(hdr, flipBit(payload, sub), sig)},
				{name: "header", token: join(flipBit(hdr, typ), payload, sig)},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					_, err := v.Verify(ctx, tt.token)
					wantRefusal(t, err, ReasonBadSignature, "signature does not verify")
				})
			}
		})
	}
}

func TestStandardLibrarySigner(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1", "ps1", "ec1", "ec384", "ec521", "ed1")
	v := allAlgorithmsVerifier(t, p, Options{CacheSize: -1})
	payload := mustJSON(t, claims(p.issuer, nil))

	for _, ak := range algKeys {
		t.Run(ak.alg+" "+ak.kid, func(t *testing.T) {
			raw := signCompact(t, ks[ak.kid], ak.alg, `{"alg":"`+ak.alg+`","kid":"`+ak.kid+`"}`, payload,
				rsa.PSSSaltLengthEqualsHash)
			if _, err := v.Verify(context.Background(), raw); err != nil {
				t.Fatalf("got error %v, want none", err)
			}
		})
	}
	// go-jose verified PSS with any salt length; so does the verifier.
	for _, salt := range []int{0, 20, rsa.PSSSaltLengthAuto} {
		raw := signCompact(t, ks["rs1"], "PS256", `{"alg":"PS256","kid":"rs1"}`, payload, salt)
		if _, err := v.Verify(context.Background(), raw); err != nil {
			t.Errorf("got error %v for PS256 with salt length %d, want none", err, salt)
		}
	}
}

func TestSignatureEncoding(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1", "ec1")
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{CacheSize: -1}, p.issuer)
	ctx := context.Background()

	for _, ak := range []struct{ alg, kid string }{{"RS256", "rs1"}, {"ES256", "ec1"}} {
		valid := mint(t, ks[ak.kid], ak.alg, nil, claims(p.issuer, nil))
		if _, err := v.Verify(ctx, valid); err != nil {
			t.Fatalf("got error %v for the valid %s token, want none", err, ak.alg)
		}
		parts := strings.Split(valid, ".")
		h64, p64, s64 := parts[0], parts[1], parts[2]
		hdr, payload, sig := split(t, valid)
		// The last character of the signature carries unused low bits
		// (256 and 64 bytes are not multiples of three); setting one gives a
		// second, non-canonical encoding of the same bytes.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		last := strings.IndexByte(alphabet, s64[len(s64)-1])
		nonCanonical := s64[:len(s64)-1] + string(alphabet[last|1])
		with := func(i int, c string) string { return s64[:i] + c + s64[i+1:] }
		hp := h64 + "." + p64 + "."
		toStd := strings.NewReplacer("-", "+", "_", "/")
		// The signature in the standard alphabet. A random ECDSA signature
		// needs neither '+' nor '/' about once in 15 draws, and is then the
		// valid token itself: one character becomes '+' so that the case
		// always carries a character outside the URL alphabet.
		std := base64.RawStdEncoding.EncodeToString(sig)
		if std == s64 {
			std = "+" + std[1:]
		}
		const bad = ReasonMalformed

		tests := []struct {
			name  string
			token string
			want  Reason
			msg   string
		}{
			{name: "signature with padding", token: hp + s64 + "==", want: bad, msg: "signature"},
			{name: "signature with one pad character", token: hp + s64 + "=", want: bad, msg: "signature"},
			{name: "signature with a plus", token: hp + with(10, "+"), want: bad, msg: "signature"},
			{name: "signature with a slash", token: hp + with(10, "/"), want: bad, msg: "signature"},
			{name: "signature in the standard alphabet", token: hp + std, want: bad, msg: "signature"},
			{name: "signature with a line break", token: hp + s64[:20] + "\n" + s64[20:], want: bad, msg: "signature"},
			{name: "signature with a space", token: hp + s64[:20] + " " + s64[20:], want: bad, msg: "signature"},
			{name: "signature with non-zero trailing bits", token: hp + nonCanonical, want: bad, msg: "signature"},
			{name: "signature cut to an impossible length", token: hp + s64[:len(s64)-(len(s64)-1)%4],
				want: bad, msg: "signature"},
			{name: "empty signature", token: hp, want: ReasonBadSignature, msg: "signature does not verify"},
			{name: "header with padding", token: b64(string(hdr)) + "=." + p64 + "." + s64, want: bad, msg: "header"},
			{name: "header with a line break", token: h64[:5] + "\r\n" + h64[5:] + "." + p64 + "." + s64,
				want: bad, msg: "header"},
			{name: "payload in the standard alphabet", token: h64 + "." + toStd.Replace(p64) + "+." + s64,
				want: bad, msg: "payload"},
			{name: "payload with a line break", token: h64 + "." + p64[:7] + "\n" + p64[7:] + "." + s64,
				want: bad, msg: "payload"},
			{name: "payload with padding", token: h64 + "." + base64.URLEncoding.EncodeToString(payload) + "=." + s64,
				want: bad, msg: "payload"},
		}
		for _, tt := range tests {
			t.Run(ak.alg+" "+tt.name, func(t *testing.T) {
				_, err := v.Verify(ctx, tt.token)
				wantRefusal(t, err, tt.want, tt.msg)
			})
		}
	}

	t.Run("ECDSA signature lengths and formats", func(t *testing.T) {
		valid := mint(t, ks["ec1"], "ES256", nil, claims(p.issuer, nil))
		hdr, payload, sig := split(t, valid)
		input := b64(string(hdr)) + "." + b64(string(payload))
		digest := signatureDigest("ES256", []byte(input))
		der, err := ecdsa.SignASN1(rand.Reader, ks["ec1"].priv.(*ecdsa.PrivateKey), digest)
		if err != nil {
			t.Fatal(err)
		}
		// r and s, each left-padded to P-521 size: the same numbers, the
		// wrong length for ES256.
		wide := make([]byte, 132)
		copy(wide[66-32:66], sig[:32])
		copy(wide[132-32:], sig[32:])
		tests := []struct {
			name string
			sig  []byte
		}{
			{name: "one byte short", sig: sig[:63]},
			{name: "one byte long", sig: append(bytes.Clone(sig), 0)},
			{name: "leading zero added", sig: append([]byte{0}, sig...)},
			{name: "ASN.1 DER instead of r||s", sig: der},
			{name: "r||s in P-521 size", sig: wide},
			{name: "r and s swapped", sig: append(bytes.Clone(sig[32:]), sig[:32]...)},
			{name: "all zero", sig: make([]byte, 64)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := v.Verify(ctx, join(hdr, payload, tt.sig))
				wantRefusal(t, err, ReasonBadSignature, "signature does not verify")
			})
		}
	})
}

func TestVerifySignatureKeyTypes(t *testing.T) {
	ks := keys(t)
	pub := func(kid string) any { return ks[kid].priv.Public() }
	input := []byte(b64(`{"alg":"x"}`) + "." + b64(`{"sub":"alice"}`))
	sign := func(kid, alg string) []byte {
		t.Helper()
		raw := signCompact(t, ks[kid], alg, `{"alg":"x"}`, `{"sub":"alice"}`, rsa.PSSSaltLengthEqualsHash)
		_, _, sig := split(t, raw)
		return sig
	}
	rs, ps, es, es384, ed := sign("rs1", "RS256"), sign("rs1", "PS256"), sign("ec1", "ES256"),
		sign("ec384", "ES384"), sign("ed1", "EdDSA")

	tests := []struct {
		name string
		alg  string
		key  any
		sig  []byte
		want bool
	}{
		{name: "RS256 with its key", alg: "RS256", key: pub("rs1"), sig: rs, want: true},
		{name: "PS256 with its key", alg: "PS256", key: pub("rs1"), sig: ps, want: true},
		{name: "ES256 with its key", alg: "ES256", key: pub("ec1"), sig: es, want: true},
		{name: "ES384 with its key", alg: "ES384", key: pub("ec384"), sig: es384, want: true},
		{name: "EdDSA with its key", alg: "EdDSA", key: pub("ed1"), sig: ed, want: true},

		{name: "ES256 with an RSA key", alg: "ES256", key: pub("rs1"), sig: es},
		{name: "ES256 with a P-384 key", alg: "ES256", key: pub("ec384"), sig: es},
		{name: "ES384 with a P-256 key", alg: "ES384", key: pub("ec1"), sig: es384},
		{name: "ES512 with a P-256 key", alg: "ES512", key: pub("ec1"), sig: es},
		{name: "ES256 with an Ed25519 key", alg: "ES256", key: pub("ed1"), sig: es},
		{name: "RS256 with an ECDSA key", alg: "RS256", key: pub("ec1"), sig: rs},
		{name: "RS256 signature checked as PS256", alg: "PS256", key: pub("rs1"), sig: rs},
		{name: "PS256 signature checked as RS256", alg: "RS256", key: pub("rs1"), sig: ps},
		{name: "RS256 signature checked as RS384", alg: "RS384", key: pub("rs1"), sig: rs},
		{name: "EdDSA with an RSA key", alg: "EdDSA", key: pub("rs1"), sig: ed},
		{name: "EdDSA with a short key", alg: "EdDSA", key: ed25519.PublicKey(make([]byte, 31)), sig: ed},
		{name: "HS256 with an RSA key", alg: "HS256", key: pub("rs1"), sig: rs},
		{name: "a JWK instead of a key", alg: "RS256", key: ks["rs1"].publicJWK(), sig: rs},
		{name: "no key", alg: "RS256", key: nil, sig: rs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			digest := signatureDigest(tt.alg, input)
			if got := verifySignature(tt.alg, tt.key, input, digest, tt.sig); got != tt.want {
				t.Errorf("got verifySignature(%s) = %v, want %v", tt.alg, got, tt.want)
			}
		})
	}
}

func TestHeaderParameters(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1", "ec1")
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{CacheSize: -1}, p.issuer)
	payload := mustJSON(t, claims(p.issuer, nil))
	privJWK, err := json.Marshal(map[string]any{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		header string
		want   Reason // "" means the token verifies
		msg    string
	}{
		{name: "plain", header: `{"alg":"RS256","kid":"rs1","typ":"JWT"}`},
		{name: "whitespace", header: " {\n\t\"alg\" : \"RS256\" ,\r\n \"kid\":\"rs1\" } ",
			want: ReasonMalformed, msg: "not a JSON object"},
		{name: "whitespace inside", header: "{\n\t\"alg\" : \"RS256\" ,\r\n \"kid\":\"rs1\" }\n"},
		{name: "escaped names and values", header: `{"\u0061lg":"RS256","kid":"r\u00731","typ":"\u004aWT"}`},
		{name: "agreeing case variant of alg", header: `{"alg":"RS256","ALG":"RS256","kid":"rs1"}`},
		{name: "case variant of alg only", header: `{"ALG":"RS256","kid":"rs1"}`,
			want: ReasonMalformed, msg: "unexpected signature algorithm"},
		{name: "disagreeing case variant of alg", header: `{"alg":"RS256","Alg":"ES256","kid":"rs1"}`,
			want: ReasonMalformed, msg: "unexpected signature algorithm"},
		{name: "case variant of alg saying none", header: `{"alg":"RS256","aLg":"none","kid":"rs1"}`,
			want: ReasonAlgorithm, msg: "never allowed"},
		{name: "repeated kid", header: `{"alg":"RS256","kid":"nope","kid":"rs1"}`,
			want: ReasonMalformed, msg: "invalid protected header"},
		{name: "repeated unknown parameter", header: `{"alg":"RS256","kid":"rs1","x":"1","x":"2"}`,
			want: ReasonMalformed, msg: "invalid protected header"},
		{name: "repeated name in a nested object", header: `{"alg":"RS256","kid":"rs1","x":{"a":1,"a":2}}`,
			want: ReasonMalformed, msg: "duplicate key"},
		{name: "number beyond float64", header: `{"alg":"RS256","kid":"rs1","x":1e999}`,
			want: ReasonMalformed, msg: "malformed"},
		{name: "number", header: `{"alg":"RS256","kid":"rs1","iat":1700000000,"x":-1.5}`},
		{name: "many parameters", header: `{"alg":"RS256","kid":"rs1","a":"","b":"","c":"","d":"","e":"","f":"",` +
			`"g":"","h":"","i":"","j":"","k":"","l":"","m":"","n":"","o":"","p":"","q":true}`},
		{name: "case variants are distinct names", header: `{"alg":"RS256","kid":"rs1","x":"1","X":"2"}`},
		{name: "case variant of kid", header: `{"alg":"RS256","KID":"rs1"}`},
		{name: "kid with a Kelvin sign", header: `{"alg":"RS256","\u212aid":"rs1"}`},
		{name: "null kid", header: `{"alg":"RS256","kid":null}`},
		{name: "alg not a string", header: `{"alg":256,"kid":"rs1"}`, want: ReasonMalformed, msg: "header"},
		{name: "kid not a string", header: `{"alg":"RS256","kid":["rs1"]}`, want: ReasonMalformed, msg: "header"},
		{name: "typ not a string", header: `{"alg":"RS256","kid":"rs1","typ":{}}`, want: ReasonMalformed, msg: "header"},
		{name: "critical in capitals", header: `{"alg":"RS256","kid":"rs1","CRIT":["exp"]}`,
			want: ReasonMalformed, msg: "critical"},
		{name: "null crit", header: `{"alg":"RS256","kid":"rs1","crit":null}`, want: ReasonMalformed, msg: "critical"},
		{name: "b64 false", header: `{"alg":"RS256","kid":"rs1","b64":false}`, want: ReasonMalformed, msg: "b64"},
		{name: "access token type in capitals", header: `{"alg":"RS256","kid":"rs1","typ":"AT+JWT"}`,
			want: ReasonMalformed, msg: "access token"},
		{name: "media type of an access token", header: `{"alg":"RS256","kid":"rs1","typ":"application/at+JWT"}`,
			want: ReasonMalformed, msg: "access token"},
		{name: "private embedded jwk", header: `{"alg":"RS256","kid":"rs1","jwk":` + string(privJWK) + `}`,
			want: ReasonMalformed, msg: "malformed"},
		{name: "embedded jwk that is no key", header: `{"alg":"RS256","kid":"rs1","jwk":{"kty":"none"}}`,
			want: ReasonMalformed, msg: "malformed"},
		{name: "x5c that is no certificate", header: `{"alg":"RS256","kid":"rs1","x5c":["bm90IGEgY2VydA=="]}`,
			want: ReasonMalformed, msg: "malformed"},
		{name: "nonce not a string", header: `{"alg":"RS256","kid":"rs1","nonce":5}`, want: ReasonMalformed, msg: "malformed"},
		{name: "nonce", header: `{"alg":"RS256","kid":"rs1","nonce":"n-0S6_WzA2Mj"}`},
		{name: "nested objects and unknown parameters",
			header: `{"x":{"alg":"none","y":[1,{"kid":"z"}]},"alg":"RS256","kid":"rs1","z":"}"}`},
		{name: "ES256 header on an RSA signature, no kid", header: `{"alg":"ES256"}`,
			want: ReasonBadSignature, msg: "signature does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := signCompact(t, ks["rs1"], "RS256", tt.header, payload, 0)
			_, err := v.Verify(context.Background(), raw)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			wantRefusal(t, err, tt.want, tt.msg)
		})
	}
}

func TestRSAKeyForES256(t *testing.T) {
	ks := keys(t)
	p := newTestIdP(t, "rs1")
	v := startVerifier(t, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{CacheSize: -1, RefetchInterval: time.Hour}, p.issuer)
	payload := mustJSON(t, claims(p.issuer, nil))

	tests := []struct {
		name  string
		token string
		want  Reason
		msg   string
	}{
		{name: "ES256 token naming the RSA key",
			token: signCompact(t, ks["ec1"], "ES256", `{"alg":"ES256","kid":"rs1"}`, payload, 0),
			want:  ReasonAlgorithm, msg: `does not match key "rs1"`},
		{name: "ES256 token naming no key",
			token: signCompact(t, ks["ec1"], "ES256", `{"alg":"ES256"}`, payload, 0),
			want:  ReasonUnknownKey, msg: `no key fits algorithm "ES256"`},
		{name: "RSA signature under an ES256 header naming the RSA key",
			token: signCompact(t, ks["rs1"], "RS256", `{"alg":"ES256","kid":"rs1"}`, payload, 0),
			want:  ReasonAlgorithm, msg: `does not match key "rs1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tt.token)
			wantRefusal(t, err, tt.want, tt.msg)
		})
	}
}

func TestIssuerName(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    string
		wantOK  bool
		wantErr string
	}{
		{name: "plain", payload: `{"sub":"a","iss":"https://idp"}`, want: "https://idp", wantOK: true},
		{name: "escaped", payload: `{"iss":"https:\/\/idp\u002f"}`, want: "https://idp/", wantOK: true},
		{name: "last one wins", payload: `{"iss":"a","iss":"b"}`, want: "b", wantOK: true},
		{name: "case variant, last wins", payload: `{"iss":"a","ISS":"b"}`, want: "b", wantOK: true},
		{name: "invalid UTF-8 replaced", payload: "{\"iss\":\"a\xffb\"}", want: "a\uFFFDb", wantOK: true},
		{name: "nested iss only", payload: `{"x":{"iss":"a"},"y":["iss","a"]}`},
		{name: "iss as a value", payload: `{"x":"iss"}`},
		{name: "number", payload: `{"iss":7}`},
		{name: "null", payload: `{"iss":"a","iss":null}`},
		{name: "empty object", payload: `{}`},
		{name: "array", payload: `["iss"]`, wantErr: "not a JSON object"},
		{name: "leading space", payload: ` {"iss":"a"}`, wantErr: "not a JSON object"},
		{name: "truncated", payload: `{"iss":"a"`, wantErr: "json: unexpected end of JSON input"},
		{name: "trailing data", payload: `{"iss":"a"}{}`, wantErr: "json: invalid character"},
		{name: "trailing space", payload: "{\"iss\":\"a\"}\n", want: "a", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := issuerName([]byte(tt.payload))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if string(got) != tt.want || ok != tt.wantOK {
				t.Errorf("got %q, %v, want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// oldHeader is how the verifier read its header with encoding/json before
// it read members itself; FuzzParseHeader checks the two agree.
type oldHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

// FuzzParseHeader checks the member walk against encoding/json: every
// top-level member it finds, and the header fields the verifier reads.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		`{"alg":"RS256","kid":"rs1","typ":"JWT"}`,
		`{"ALG":"RS256","alg":"ES256","Kid":null,"crit":["exp"],"b64":false}`,
		`{"\u0061lg":"x","k\"id":"y","kid":"\ud800","typ":"a\\\"b"}`,
		` { "x" : [ {"alg":"none"} , "}" , 1e5, true, null ] , "alg" : "EdDSA" } `,
		"{\"kid\":\"\xff\xfe\",\"\u212aid\":\"k\"}",
		`{"alg":1}`, `{}`, `[]`, `{"a":{}}{`, `{"a":"\u00e9","b":-0.5e-3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) || len(b) == 0 || b[0] != '{' {
			if _, err := parseHeader(b); err == nil {
				t.Fatalf("parseHeader(%q) accepted input that is not one JSON object", b)
			}
			return
		}
		want := map[string]json.RawMessage{}
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("unmarshal valid %q: %v", b, err)
		}
		got := map[string]json.RawMessage{}
		m := objectMembers{b: b, i: 1}
		for {
			k, val, ok := m.next()
			if !ok {
				break
			}
			name, err := unquote(k)
			if err != nil {
				t.Fatalf("unquote %q: %v", k, err)
			}
			got[string(name)] = json.RawMessage(val)
		}
		if diff := cmp.Diff(compactAll(t, want), compactAll(t, got)); diff != "" {
			t.Fatalf("members of %q mismatch (-encoding/json +walk):\n%s", b, diff)
		}

		var old oldHeader
		oldErr := json.Unmarshal(b, &old)
		h, err := parseHeader(b)
		if (oldErr != nil) != (err != nil) {
			t.Fatalf("parseHeader(%q) error %v, encoding/json error %v: want both or neither", b, err, oldErr)
		}
		if err != nil {
			return
		}
		gotH := oldHeader{Alg: h.Alg, Kid: h.Kid, Typ: h.Typ, Crit: h.Crit, B64: h.B64}
		if diff := cmp.Diff(old, gotH); diff != "" {
			t.Fatalf("header %q mismatch (-encoding/json +parseHeader):\n%s", b, diff)
		}
		exact, hasExact := want["alg"]
		if h.hasExactAlg != hasExact {
			t.Fatalf("header %q: got hasExactAlg %v, want %v", b, h.hasExactAlg, hasExact)
		}
		if hasExact {
			var s *string
			if err := json.Unmarshal(exact, &s); err != nil {
				t.Fatalf("header %q: exact alg: %v", b, err)
			}
			if s != nil && *s != h.exactAlg || s == nil && h.exactAlg != "" {
				t.Fatalf("header %q: got exact alg %q, want %s", b, h.exactAlg, exact)
			}
		}
	})
}

func compactAll(t *testing.T, m map[string]json.RawMessage) map[string]string {
	t.Helper()
	out := make(map[string]string, len(m))
	for k, v := range m {
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			t.Fatalf("compact %q: %v", v, err)
		}
		out[k] = buf.String()
	}
	return out
}

// BenchmarkVerifyAlgorithms measures a full verification per algorithm,
// cache disabled.
func BenchmarkVerifyAlgorithms(b *testing.B) {
	ks := keys(b)
	p := newTestIdP(b, "rs1", "ec1", "ec384", "ed1")
	v := allAlgorithmsVerifier(b, p, Options{CacheSize: -1})
	for _, ak := range []struct{ alg, kid string }{{"PS256", "rs1"}, {"ES384", "ec384"}, {"EdDSA", "ed1"}} {
		raw := mint(b, ks[ak.kid], ak.alg, nil, claims(p.issuer, map[string]any{"exp": time.Now().Add(24 * time.Hour).Unix()}))
		b.Run(ak.alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzSignatureAgainstGoJose compares the verifier's own signature check
// with go-jose's, which it replaced. Whatever the input, a token the
// verifier accepts must verify with go-jose too; and a token whose
// segments are canonical base64url and whose signature go-jose verifies
// must never be refused as SIGNATURE_INVALID.
func FuzzSignatureAgainstGoJose(f *testing.F) {
	ks := keys(f)
	p := newTestIdP(f, "rs1", "ec1", "ec384", "ed1")
	v := allAlgorithmsVerifier(f, p, Options{RefetchInterval: time.Hour, CacheSize: -1})
	c := claims(p.issuer, map[string]any{"exp": time.Now().Add(24 * time.Hour).Unix()})
	for _, ak := range []struct{ alg, kid string }{
		{"RS256", "rs1"}, {"PS384", "rs1"}, {"ES256", "ec1"}, {"ES384", "ec384"}, {"EdDSA", "ed1"},
	} {
		f.Add(mint(f, ks[ak.kid], ak.alg, nil, c))
	}
	f.Add(mint(f, ks["rs1"], "RS256", map[string]any{"x": map[string]any{"y": 1}}, c))
	f.Add(mint(f, ks["ec1"], "ES256", map[string]any{"kid": "rs1"}, c))

	f.Fuzz(func(t *testing.T, raw string) {
		_, err := v.Verify(context.Background(), raw)
		joseOK := false
		var e *Error
		if jws, perr := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{
			jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
			jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
		}); perr == nil {
			for _, kid := range []string{"rs1", "ec1", "ec384", "ed1"} {
				if _, verr := jws.Verify(ks[kid].priv.Public()); verr == nil {
					joseOK = true
				}
			}
		}
		if err == nil && !joseOK {
			t.Fatalf("verifier accepted %q, which go-jose does not verify", raw)
		}
		if joseOK && canonicalSegments(raw) && errors.As(err, &e) && e.Reason == ReasonBadSignature {
			t.Fatalf("verifier refused %q as %v, which go-jose verifies", raw, err)
		}
	})
}

// canonicalSegments reports whether every segment of raw is the canonical
// unpadded base64url encoding of its bytes.
func canonicalSegments(raw string) bool {
	for seg := range strings.SplitSeq(raw, ".") {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != seg {
			return false
		}
	}
	return true
}
