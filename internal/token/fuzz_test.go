package token

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// knownReasons are every Reason Verify may return.
var knownReasons = map[Reason]bool{
	ReasonMalformed: true, ReasonBadSignature: true, ReasonAlgorithm: true, ReasonUnknownKey: true,
	ReasonUnknownIssuer: true, ReasonAudience: true, ReasonExpired: true, ReasonNotYetValid: true,
	ReasonClaim: true, ReasonIssuerUnavailable: true,
}

// FuzzVerify feeds arbitrary strings to Verify against a live loopback
// issuer. Whatever the input, Verify must not panic, must refuse with a
// known Reason, and may accept only a token that carries a subject and an
// unexpired date from the trusted issuer. The seeds, valid tokens among
// them, run in every plain go test.
func FuzzVerify(f *testing.F) {
	ks := keys(f)
	p := newTestIdP(f, "rs1", "ec1", "ed1")
	v := startVerifier(f, []IssuerConfig{{Issuer: p.issuer, Audiences: []string{"superset"}}},
		Options{RefetchInterval: time.Hour, CacheSize: 16}, p.issuer)

	valid := mint(f, ks["rs1"], "RS256", nil, claims(p.issuer, nil))
	f.Add(valid)
	f.Add(mint(f, ks["ec1"], "ES256", nil, claims(p.issuer, nil)))
	f.Add(mint(f, ks["ed1"], "EdDSA", nil, claims(p.issuer, map[string]any{"aud": []string{"superset", "x"}, "azp": "superset"})))
	f.Add(mint(f, ks["rs1"], "RS256", map[string]any{"crit": []string{"x"}}, claims(p.issuer, nil)))
	f.Add(mint(f, ks["attacker"], "RS256", map[string]any{"embed-jwk": true}, claims(p.issuer, nil)))
	f.Add(mint(f, ks["rs1"], "RS256", nil, claims(p.issuer, map[string]any{"exp": "soon", "nbf": -1e300})))
	f.Add(valid[:len(valid)-3])
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add(b64(`{"alg":"none"}`) + "." + b64(`{"iss":"`+p.issuer+`"}`) + ".")
	f.Add(b64(`{"alg":"RS256","kid":"rs1"}`) + "." + b64(`{"iss":"`+p.issuer+`","exp":1e999}`) + ".c2ln")
	f.Add("")
	f.Add("..")
	f.Add(`{"payload":"e30","signatures":[]}`)

	f.Fuzz(func(t *testing.T, raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		id, err := v.Verify(ctx, raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got error %v (%T), want *Error", err, err)
			}
			if !knownReasons[e.Reason] || e.Message == "" {
				t.Fatalf("got reason %q message %q, want a known reason and a message", e.Reason, e.Message)
			}
			if id != nil {
				t.Fatalf("got identity %+v with error %v, want nil", id, err)
			}
			return
		}
		if id.Issuer != p.issuer || id.Subject == "" || id.Groups == nil {
			t.Fatalf("accepted identity %+v, want the trusted issuer, a subject and non-nil groups", id)
		}
		if !time.Now().Before(id.Expiry.Add(DefaultClockSkew)) {
			t.Fatalf("accepted a token that expired at %v", id.Expiry)
		}
	})
}
