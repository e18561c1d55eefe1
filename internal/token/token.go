// Package token verifies OpenID Connect ID tokens against the keys of the
// issuers that authzd is configured to trust, and turns a verified token into
// an Identity that the policy engine can reason about.
//
// Verification checks the signature with a key of the token's own issuer
// (fetched by OIDC discovery or from an explicit JWKS URL, cached, refreshed
// in the background and re-fetched, rate-limited, when a token names an
// unknown key), the algorithm against an allow-list, and the registered
// claims iss, aud, azp, exp, nbf and iat within a configurable clock skew.
package token

import (
	"fmt"
	"time"
)

// IssuerConfig describes one trusted identity provider.
type IssuerConfig struct {
	// Issuer is the exact value the token's iss claim must carry. Required.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Audiences lists accepted client ids; the token's aud must contain at
	// least one of them. Required, at least one.
	Audiences []string `yaml:"audiences" json:"audiences"`
	// JWKSURL, when set, is used instead of OIDC discovery.
	JWKSURL string `yaml:"jwks_url" json:"jwks_url"`
	// Algorithms is the signature allow-list. Empty means RS256, ES256,
	// PS256 and EdDSA. "none" and HMAC algorithms are always refused.
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	// GroupsClaim is a dotted path to the claim holding the person's groups
	// (for example "cognito:groups", "groups" or "realm_access.roles"). The
	// claim may be a string or an array of strings. Default "groups".
	GroupsClaim string `yaml:"groups_claim" json:"groups_claim"`
	// UsernameClaim names the claim that becomes the username. When it is
	// empty or missing from a token, email, preferred_username and sub are
	// tried in that order.
	UsernameClaim string `yaml:"username_claim" json:"username_claim"`
	// RequiredClaims maps claim names to the exact string value a token must
	// carry (for example token_use: id for Amazon Cognito).
	RequiredClaims map[string]string `yaml:"required_claims" json:"required_claims"`
}

// Identity is what a verified ID token says about a person.
type Identity struct {
	Issuer    string
	Subject   string
	Username  string
	Email     string
	FirstName string
	LastName  string
	// Groups holds the values of the issuer's groups claim, in token order.
	Groups []string
	// GroupsOverage is true when the identity provider left groups out of
	// the token because there were too many (Microsoft Entra ID's
	// _claim_names / hasgroups).
	GroupsOverage bool
	// Claims holds every claim of the verified token, decoded from JSON
	// with numbers as json.Number.
	Claims map[string]any
	// Expiry is the token's exp.
	Expiry time.Time
}

// Reason is a stable, machine-readable cause of a verification failure. It
// is used as the google.rpc.ErrorInfo reason and as a metric label.
type Reason string

// Verification failure reasons.
const (
	ReasonMalformed         Reason = "TOKEN_MALFORMED"
	ReasonBadSignature      Reason = "SIGNATURE_INVALID"
	ReasonAlgorithm         Reason = "ALGORITHM_NOT_ALLOWED"
	ReasonUnknownKey        Reason = "UNKNOWN_KEY"
	ReasonUnknownIssuer     Reason = "UNKNOWN_ISSUER"
	ReasonAudience          Reason = "AUDIENCE_MISMATCH"
	ReasonExpired           Reason = "TOKEN_EXPIRED"
	ReasonNotYetValid       Reason = "TOKEN_NOT_YET_VALID"
	ReasonClaim             Reason = "CLAIM_MISMATCH"
	ReasonIssuerUnavailable Reason = "ISSUER_UNAVAILABLE"
)

// Error is returned for every token that does not verify. Callers branch on
// Reason; ReasonIssuerUnavailable means the issuer has never answered with
// keys, every other reason means the token itself was refused.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}
