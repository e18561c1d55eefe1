package token

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// checkClaims checks the registered claims of a verified token against its
// issuer's configuration and builds the Identity.
func (v *Verifier) checkClaims(iss *issuer, claims map[string]any, now time.Time) (*Identity, *Error) {
	cfg := &iss.cfg
	skew := v.opts.ClockSkew

	if s, ok := claims["iss"].(string); !ok || s != cfg.Issuer {
		return nil, errorf(ReasonUnknownIssuer, "signed iss %s does not equal issuer %s",
			quote(stringOf(claims["iss"])), quote(cfg.Issuer))
	}

	aud, ok := stringList(claims["aud"])
	if !ok || len(aud) == 0 {
		return nil, errorf(ReasonAudience, "token has no string or string-array aud claim")
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(cfg.Audiences, a) }) {
		return nil, errorf(ReasonAudience, "audience %s does not contain an accepted audience %q",
			quoteList(aud), cfg.Audiences)
	}
	if len(aud) > 1 {
		azp, _ := claims["azp"].(string)
		if azp == "" {
			return nil, errorf(ReasonAudience, "token has several audiences %s but no azp claim", quoteList(aud))
		}
		if !slices.Contains(cfg.Audiences, azp) {
			return nil, errorf(ReasonAudience, "authorized party (azp) %s is not an accepted audience %q",
				quote(azp), cfg.Audiences)
		}
	}

	exp, present, err := numericDate(claims, "exp")
	switch {
	case err != nil:
		return nil, err
	case !present:
		return nil, errorf(ReasonMalformed, "token has no exp claim")
	case now.After(exp.Add(skew)):
		return nil, errorf(ReasonExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	nbf, present, err := numericDate(claims, "nbf")
	if err != nil {
		return nil, err
	}
	if present && nbf.After(now.Add(skew)) {
		return nil, errorf(ReasonNotYetValid, "token is not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	iat, present, err := numericDate(claims, "iat")
	if err != nil {
		return nil, err
	}
	if present && iat.After(now.Add(skew)) {
		return nil, errorf(ReasonNotYetValid, "token is issued in the future, at %s", iat.UTC().Format(time.RFC3339))
	}

	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, errorf(ReasonMalformed, "token has no sub claim")
	}

	for name, want := range cfg.RequiredClaims {
		got, found := lookup(claims, name)
		if !found {
			return nil, errorf(ReasonClaim, "required claim %s is missing, want %s", quote(name), quote(want))
		}
		if s, ok := got.(string); !ok || s != want {
			return nil, errorf(ReasonClaim, "claim %s is %s, want %s", quote(name), quote(stringOf(got)), quote(want))
		}
	}

	id := &Identity{
		Issuer:  cfg.Issuer,
		Subject: sub,
		Claims:  claims,
		Expiry:  exp,
	}
	id.Email, _ = claims["email"].(string)
	id.Username = username(claims, cfg.UsernameClaim)
	id.FirstName, _ = claims["given_name"].(string)
	id.LastName, _ = claims["family_name"].(string)
	if id.FirstName == "" && id.LastName == "" {
		if name, ok := claims["name"].(string); ok {
			first, last, _ := strings.Cut(strings.TrimSpace(name), " ")
			id.FirstName, id.LastName = first, strings.TrimSpace(last)
		}
	}
	id.Groups = groups(claims, cfg.GroupsClaim)
	id.GroupsOverage = overage(claims)
	return id, nil
}

// numericDate reads a NumericDate claim. present is false when the claim is
// absent; a claim that is not a finite number is an error.
func numericDate(claims map[string]any, name string) (t time.Time, present bool, err *Error) {
	raw, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return time.Time{}, true, errorf(ReasonMalformed, "claim %s is not a number", quote(name))
	}
	f, perr := n.Float64()
	// Beyond ±2^53 seconds the value is no real date and overflows Time.
	if perr != nil || math.IsNaN(f) || math.Abs(f) > 1<<53 {
		return time.Time{}, true, errorf(ReasonMalformed, "claim %s %s is not a valid date", quote(name), quote(string(n)))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// username picks the configured claim when it holds a non-empty string,
// then email (unless email_verified is false), preferred_username and sub.
func username(claims map[string]any, claim string) string {
	if claim != "" {
		if v, ok := lookup(claims, claim); ok {
			if s, ok := v.(string); ok && s != "" {
				return s
			}
		}
	}
	if s, ok := claims["email"].(string); ok && s != "" {
		if verified, ok := claims["email_verified"].(bool); !ok || verified {
			return s
		}
	}
	for _, c := range []string{"preferred_username", "sub"} {
		if s, ok := claims[c].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// groups reads the groups claim: a string is one group, an array keeps its
// string elements in order. It is never nil.
func groups(claims map[string]any, path string) []string {
	out := []string{}
	v, ok := lookup(claims, path)
	if !ok {
		return out
	}
	switch g := v.(type) {
	case string:
		if g != "" {
			out = append(out, g)
		}
	case []any:
		for _, e := range g {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// overage reports Microsoft Entra ID's group overage: the token names a
// source for its groups instead of carrying them.
func overage(claims map[string]any) bool {
	if names, ok := claims["_claim_names"].(map[string]any); ok {
		if _, ok := names["groups"]; ok {
			return true
		}
	}
	b, _ := claims["hasgroups"].(bool)
	return b
}

// lookup finds a claim by name: first as a key of its own (so
// "cognito:groups" or a name with dots works), then as a dotted path into
// nested objects (so "realm_access.roles" works).
func lookup(claims map[string]any, path string) (any, bool) {
	if v, ok := claims[path]; ok {
		return v, true
	}
	if !strings.Contains(path, ".") {
		return nil, false
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// stringList reads a claim that is a string or an array of strings.
func stringList(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func stringOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// quoteList renders an untrusted list like %q does, bounded in length.
func quoteList(l []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range l {
		if i == 8 {
			b.WriteString(" ...")
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(s))
	}
	b.WriteByte(']')
	return b.String()
}
