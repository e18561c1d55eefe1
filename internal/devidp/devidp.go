// Package devidp is the identity provider that `authzd serve --dev` runs
// for a first try and for tests: an in-memory RSA signing key, an OIDC
// discovery document, a JWKS, and an endpoint that mints ID tokens for any
// claims asked for.
//
// NOT FOR PRODUCTION. Anyone who can reach the mint endpoint can become
// anyone; the server mounts this package in dev mode only, on loopback only.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// PathPrefix is where the provider's endpoints live on the HTTP listener.
const PathPrefix = "/dev"

// Audience is the audience of every minted token.
const Audience = "superset"

// DefaultTTL is the lifetime of a minted token unless the request says
// otherwise.
const DefaultTTL = time.Hour

// Options configures a Provider.
type Options struct {
	// BaseURL is the HTTP listener's URL, for example
	// "http://127.0.0.1:8080"; the issuer is BaseURL + PathPrefix.
	BaseURL string
	// UsersFile, when set, names a YAML or JSON file of dev users that the
	// authorize endpoint may approve.
	UsersFile string
	// Logger receives the provider's log lines.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Provider is the dev identity provider.
type Provider struct {
	opts   Options
	issuer string
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
	log    *slog.Logger
	oauth  *oauthState
}

// New creates a Provider with a fresh 2048-bit RSA key.
func New(opts Options) (*Provider, error) {
	if opts.BaseURL == "" {
		return nil, errors.New("devidp: base URL is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devidp: generate key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.RS256), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	kid := fmt.Sprintf("dev-%x", thumb[:8])
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid),
	)
	if err != nil {
		return nil, fmt.Errorf("devidp: signer: %w", err)
	}
	p := &Provider{
		opts:   opts,
		issuer: strings.TrimSuffix(opts.BaseURL, "/") + PathPrefix,
		key:    key,
		kid:    kid,
		signer: signer,
		log:    opts.Logger,
	}
	if err := p.initOAuth(); err != nil {
		return nil, err
	}
	return p, nil
}

// Issuer is the provider's issuer URL, the iss of every token it mints.
func (p *Provider) Issuer() string { return p.issuer }

// Mint signs an ID token with the given claims. It sets iss, aud, iat and
// exp (one hour) unless claims already hold them; sub is required.
func (p *Provider) Mint(claims map[string]any) (string, error) {
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return "", errors.New("devidp: claim \"sub\" is required")
	}
	now := p.opts.Now()
	all := make(map[string]any, len(claims)+4)
	all["iss"] = p.issuer
	all["aud"] = Audience
	all["iat"] = now.Unix()
	all["exp"] = now.Add(DefaultTTL).Unix()
	for k, v := range claims {
		all[k] = v
	}
	return jwt.Signed(p.signer).Claims(all).Serialize()
}

// Handler serves the provider's endpoints under PathPrefix.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathPrefix+"/.well-known/openid-configuration", p.serveDiscovery)
	mux.HandleFunc("GET "+PathPrefix+"/jwks.json", p.serveJWKS)
	mux.HandleFunc("POST "+PathPrefix+"/token", p.serveMint)
	p.registerOAuth(mux)
	return mux
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	doc := map[string]any{
		"issuer":                                p.issuer,
		"jwks_uri":                              p.issuer + "/jwks.json",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"subject_types_supported":               []string{"public"},
		"response_types_supported":              []string{"code"},
	}
	for k, v := range p.oauthMetadata() {
		doc[k] = v
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, set)
}

// MintRequest is the body of POST /dev/token.
type MintRequest struct {
	// Claims are the token's claims; sub is required.
	Claims map[string]any `json:"claims"`
	// TTLSeconds overrides the one-hour lifetime when positive.
	TTLSeconds int64 `json:"ttl_seconds"`
}

func (p *Provider) serveMint(w http.ResponseWriter, r *http.Request) {
	var req MintRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "decode request: " + err.Error()})
		return
	}
	if req.Claims == nil {
		req.Claims = map[string]any{}
	}
	if req.TTLSeconds > 0 {
		if _, set := req.Claims["exp"]; !set {
			req.Claims["exp"] = p.opts.Now().Add(time.Duration(req.TTLSeconds) * time.Second).Unix()
		}
	}
	tok, err := p.Mint(req.Claims)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	p.log.Info("dev token minted", "sub", req.Claims["sub"])
	writeJSON(w, http.StatusOK, map[string]string{"id_token": tok})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// ClaimValue turns a command-line claim value into a claim: JSON numbers,
// booleans, arrays and objects stay typed, anything else is a string.
func ClaimValue(v string) any {
	if v == "" {
		return v
	}
	switch v[0] {
	case '[', '{', 't', 'f', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		dec := json.NewDecoder(strings.NewReader(v))
		dec.UseNumber()
		var out any
		if err := dec.Decode(&out); err == nil && !dec.More() {
			return out
		}
	}
	return v
}

// SignWithKey signs a token with a PEM private key (RSA, EC or Ed25519),
// for tests and demos against a configured issuer whose JWKS holds the
// matching public key. It sets iss, aud (unless claims hold one), iat and
// exp from ttl.
func SignWithKey(pemKey []byte, issuer string, claims map[string]any, ttl time.Duration) (string, error) {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return "", errors.New("devidp: key file holds no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if k, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 == nil {
			key, err = k, nil
		} else if k, err2 := x509.ParseECPrivateKey(block.Bytes); err2 == nil {
			key, err = k, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("devidp: parse private key: %w", err)
	}
	var alg jose.SignatureAlgorithm
	var pub any
	switch k := key.(type) {
	case *rsa.PrivateKey:
		alg, pub = jose.RS256, &k.PublicKey
	case *ecdsa.PrivateKey:
		alg, pub = jose.ES256, &k.PublicKey
	case ed25519.PrivateKey:
		alg, pub = jose.EdDSA, k.Public()
	default:
		return "", fmt.Errorf("devidp: unsupported key type %T", key)
	}
	thumb, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", fmt.Sprintf("%x", thumb[:8])))
	if err != nil {
		return "", fmt.Errorf("devidp: signer: %w", err)
	}
	now := time.Now()
	all := map[string]any{"iss": issuer, "aud": Audience, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	return jwt.Signed(signer).Claims(all).Serialize()
}
