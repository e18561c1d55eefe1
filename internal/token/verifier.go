package token

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authzd/authzd/internal/lru"
)

// Defaults of Options, used when a field is zero.
const (
	// DefaultClockSkew is the tolerance applied to exp, nbf and iat.
	DefaultClockSkew = 60 * time.Second
	// DefaultRefreshInterval is the key refresh interval when the key set
	// response carries no Cache-Control max-age.
	DefaultRefreshInterval = time.Hour
	// DefaultMinRefreshInterval is the lower bound of a max-age refresh.
	DefaultMinRefreshInterval = time.Minute
	// DefaultMaxRefreshInterval is the upper bound of a max-age refresh.
	DefaultMaxRefreshInterval = 24 * time.Hour
	// DefaultRefetchInterval is the least time between two refetches that
	// unknown kids trigger, per issuer.
	DefaultRefetchInterval = 10 * time.Second
	// DefaultRetryMin is the first backoff after a failed fetch.
	DefaultRetryMin = 500 * time.Millisecond
	// DefaultRetryMax caps the backoff between failed fetches.
	DefaultRetryMax = time.Minute
	// DefaultFetchTimeout bounds one discovery plus key set fetch.
	DefaultFetchTimeout = 10 * time.Second
	// DefaultCacheSize is the number of verified tokens kept.
	DefaultCacheSize = 10000
	// DefaultMaxTokenBytes is the longest token that is parsed at all.
	DefaultMaxTokenBytes = 64 << 10
)

// DefaultAlgorithms is the signature allow-list of an issuer that names none.
var DefaultAlgorithms = []string{"RS256", "ES256", "PS256", "EdDSA"}

// supportedAlgorithms lists every algorithm an issuer may allow. HMAC and
// "none" are deliberately absent: a verifier that holds only public keys can
// never check them safely.
var supportedAlgorithms = map[string]jose.SignatureAlgorithm{
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"EdDSA": jose.EdDSA,
}

// Options tunes a Verifier. The zero value is usable: every zero field takes
// the default named in its comment.
type Options struct {
	// ClockSkew is the tolerance applied to exp, nbf and iat. Zero means
	// DefaultClockSkew (60s); a negative value means no tolerance at all.
	ClockSkew time.Duration
	// HTTPClient fetches discovery documents and key sets. Nil means a
	// client with FetchTimeout as its timeout.
	HTTPClient *http.Client
	// Logger receives key-fetch events: outages at WARN (once per
	// transition), recoveries and key changes at INFO. Nil discards them.
	// Tokens are never logged.
	Logger *slog.Logger
	// Registerer, when not nil, receives the verifier's Prometheus metrics.
	Registerer prometheus.Registerer
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	// RefreshInterval is how often keys are re-fetched when the key set
	// response carries no Cache-Control max-age. Default 1h.
	RefreshInterval time.Duration
	// MinRefreshInterval and MaxRefreshInterval bound the refresh interval
	// taken from Cache-Control max-age. Defaults 1m and 24h.
	MinRefreshInterval time.Duration
	MaxRefreshInterval time.Duration
	// RefetchInterval is the least time between two fetches triggered by
	// tokens naming an unknown kid, per issuer. It bounds what a flood of
	// forged kids costs the identity provider. Default 10s.
	RefetchInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff between fetch
	// attempts while an identity provider fails. Defaults 500ms and 1m.
	RetryMin time.Duration
	RetryMax time.Duration
	// FetchTimeout bounds one discovery plus key set fetch. Default 10s.
	FetchTimeout time.Duration

	// CacheSize is the number of verified tokens kept. Zero means
	// DefaultCacheSize (10000); a negative value disables the cache.
	CacheSize int
	// MaxTokenBytes refuses longer tokens before any parsing. Default 64 KiB.
	MaxTokenBytes int
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	switch {
	case o.ClockSkew == 0:
		o.ClockSkew = DefaultClockSkew
	case o.ClockSkew < 0:
		o.ClockSkew = 0
	}
	def(&o.RefreshInterval, DefaultRefreshInterval)
	def(&o.MinRefreshInterval, DefaultMinRefreshInterval)
	def(&o.MaxRefreshInterval, DefaultMaxRefreshInterval)
	def(&o.RefetchInterval, DefaultRefetchInterval)
	def(&o.RetryMin, DefaultRetryMin)
	def(&o.RetryMax, DefaultRetryMax)
	def(&o.FetchTimeout, DefaultFetchTimeout)
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MaxTokenBytes == 0 {
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.FetchTimeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func (o Options) validate() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"refresh interval", o.RefreshInterval},
		{"min refresh interval", o.MinRefreshInterval},
		{"max refresh interval", o.MaxRefreshInterval},
		{"refetch interval", o.RefetchInterval},
		{"retry min", o.RetryMin},
		{"retry max", o.RetryMax},
		{"fetch timeout", o.FetchTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("options: %s %q is negative", d.name, d.v))
		}
	}
	if o.MinRefreshInterval > o.MaxRefreshInterval {
		errs = append(errs, fmt.Errorf("options: min refresh interval %q exceeds max refresh interval %q",
			o.MinRefreshInterval, o.MaxRefreshInterval))
	}
	if o.RetryMin > o.RetryMax {
		errs = append(errs, fmt.Errorf("options: retry min %q exceeds retry max %q", o.RetryMin, o.RetryMax))
	}
	if o.MaxTokenBytes < 0 {
		errs = append(errs, fmt.Errorf("options: max token bytes %d is negative", o.MaxTokenBytes))
	}
	return errs
}

// Verifier verifies ID tokens of a fixed set of issuers. It is safe for
// concurrent use. Create it with NewVerifier and call Start to fetch keys.
type Verifier struct {
	opts    Options
	issuers map[string]*issuer
	order   []*issuer
	cache   *lru.Cache[[sha256.Size]byte, *cacheEntry]
	metrics *metrics

	startOnce sync.Once
	ctx       atomic.Pointer[context.Context] // the context given to Start
}

// NewVerifier checks the issuer configuration and returns a Verifier that
// has no keys yet; it does no network I/O. Every configuration problem is
// reported at once, joined in the returned error.
func NewVerifier(issuers []IssuerConfig, opts Options) (*Verifier, error) {
	opts = opts.withDefaults()
	errs := opts.validate()
	if len(issuers) == 0 {
		errs = append(errs, errors.New("issuers: at least one issuer is required"))
	}
	v := &Verifier{opts: opts, issuers: make(map[string]*issuer, len(issuers))}
	for i, cfg := range issuers {
		iss, ierrs := newIssuer(cfg, v)
		for _, err := range ierrs {
			errs = append(errs, fmt.Errorf("issuers[%d] %s: %w", i, quote(cfg.Issuer), err))
		}
		if len(ierrs) > 0 {
			continue
		}
		if _, dup := v.issuers[cfg.Issuer]; dup {
			errs = append(errs, fmt.Errorf("issuers[%d] %s: issuer is configured twice", i, quote(cfg.Issuer)))
			continue
		}
		v.issuers[cfg.Issuer] = iss
		v.order = append(v.order, iss)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("token verifier configuration: %w", errors.Join(errs...))
	}
	if opts.CacheSize > 0 {
		v.cache = lru.New[[sha256.Size]byte, *cacheEntry](opts.CacheSize)
	}
	if opts.Registerer != nil {
		m, err := newMetrics(opts.Registerer, v)
		if err != nil {
			return nil, fmt.Errorf("token verifier metrics: %w", err)
		}
		v.metrics = m
	}
	return v, nil
}

func validateURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s %s is not a URL: %w", field, quote(raw), err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("%s %s must be an http or https URL", field, quote(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("%s %s has no host", field, quote(raw))
	}
	return nil
}

// Verify checks raw, a compact-serialized ID token, and returns the identity
// it carries. Every refusal is an *Error; its Reason is
// ReasonIssuerUnavailable only when the token's issuer has never answered
// with keys. The returned Identity may be shared with other callers (it is
// cached) and must not be modified. ctx bounds only the wait for a key
// refetch that an unknown kid triggers.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	id, iss, err := v.verify(ctx, raw)
	if v.metrics != nil {
		v.metrics.observe(iss, err)
	}
	if err != nil {
		return nil, err
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Identity, *issuer, *Error) {
	if raw == "" {
		return nil, nil, errorf(ReasonMalformed, "token is empty")
	}
	if len(raw) > v.opts.MaxTokenBytes {
		return nil, nil, errorf(ReasonMalformed, "token is %d bytes, more than the %d allowed",
			len(raw), v.opts.MaxTokenBytes)
	}
	now := v.opts.Now()

	var cacheKey [sha256.Size]byte
	if v.cache != nil {
		cacheKey = sha256.Sum256([]byte(raw))
		if e, ok := v.cache.Get(cacheKey); ok {
			// An entry is only good while its token is unexpired and the
			// key set it was checked against is still current; otherwise
			// the token is verified again from scratch.
			if now.Before(e.id.Expiry) && e.iss.keys.Load() == e.keys {
				v.metrics.cacheHit()
				return e.id, e.iss, nil
			}
			v.cache.Remove(cacheKey)
		}
		v.metrics.cacheMiss()
	}

	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return nil, nil, errorf(ReasonMalformed, "token is not a compact JWS of three dot-separated parts")
	}
	// One buffer holds the token as bytes, whose first part is the signing
	// input exactly as sent, and room for the three decoded segments.
	buf := make([]byte, len(raw)+b64url.DecodedLen(len(h64))+b64url.DecodedLen(len(p64))+
		b64url.DecodedLen(len(s64)))
	tok, dec := buf[:len(raw):len(raw)], buf[len(raw):]
	copy(tok, raw)
	input := tok[:len(h64)+1+len(p64)]
	hseg, pseg, sseg := tok[:len(h64)], tok[len(h64)+1:len(input)], tok[len(input)+1:]

	hdrJSON, err := decodeSegment(dec, hseg)
	if err == nil {
		dec = dec[len(hdrJSON):]
	}
	var hdr jwtHeader
	if err == nil {
		hdr, err = parseHeader(hdrJSON)
	}
	if err != nil {
		return nil, nil, errorf(ReasonMalformed, "token header is malformed: %v", err)
	}
	if hdr.Alg == "none" || strings.HasPrefix(hdr.Alg, "HS") {
		return nil, nil, errorf(ReasonAlgorithm, "algorithm %s is never allowed", quote(hdr.Alg))
	}
	if _, ok := supportedAlgorithms[hdr.Alg]; !ok {
		return nil, nil, errorf(ReasonAlgorithm, "algorithm %s is not supported", quote(hdr.Alg))
	}
	if len(hdr.Crit) > 0 {
		return nil, nil, errorf(ReasonMalformed, "token header has critical extensions %s, none is understood",
			quoteBytes(hdr.Crit))
	}
	if len(hdr.B64) > 0 {
		return nil, nil, errorf(ReasonMalformed, "token header has the unencoded-payload parameter \"b64\"")
	}
	if strings.EqualFold(hdr.Typ, "at+jwt") || strings.EqualFold(hdr.Typ, "application/at+jwt") {
		return nil, nil, errorf(ReasonMalformed, "token type %s is an access token, not an ID token",
			quote(hdr.Typ))
	}

	payload, err := decodeSegment(dec, pseg)
	if err == nil {
		dec = dec[len(payload):]
	}
	var issBytes []byte
	var issOK bool
	if err == nil {
		issBytes, issOK, err = issuerName(payload)
	}
	if err != nil {
		return nil, nil, errorf(ReasonMalformed, "token payload is malformed: %v", err)
	}
	if !issOK {
		return nil, nil, errorf(ReasonMalformed, "token has no string iss claim")
	}
	iss := v.issuers[string(issBytes)]
	if iss == nil {
		return nil, nil, errorf(ReasonUnknownIssuer, "issuer %s is not trusted", quote(string(issBytes)))
	}
	if !iss.algs[hdr.Alg] {
		return nil, iss, errorf(ReasonAlgorithm, "algorithm %s is not allowed for issuer %s, allowed are %q",
			quote(hdr.Alg), quote(iss.cfg.Issuer), iss.algList)
	}

	sig, err := decodeSegment(dec, sseg)
	if err != nil {
		return nil, iss, errorf(ReasonMalformed, "token is malformed: signature: %v", err)
	}
	// The signature algorithm is the one of the parameter named exactly
	// "alg"; a header whose case variants of it disagree is malformed.
	if !hdr.hasExactAlg || hdr.exactAlg != hdr.Alg {
		return nil, iss, errorf(ReasonMalformed,
			"token is malformed: unexpected signature algorithm %s; expected [%s]", quote(hdr.exactAlg), quote(hdr.Alg))
	}
	if hdr.needsJOSE {
		// A rare header (see jwtHeader.needsJOSE) whose syntax go-jose
		// judged more strictly than parseHeader: it still judges it.
		_, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{supportedAlgorithms[hdr.Alg]})
		if err != nil {
			return nil, iss, errorf(ReasonMalformed, "token is malformed: %s",
				strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
		}
	}

	keys := iss.keys.Load()
	if keys == nil {
		return nil, iss, iss.unavailable()
	}
	cands, kerr := keys.candidates(hdr.Kid, hdr.Alg)
	if kerr == errNoSuchKid {
		keys, kerr = iss.refetchForKid(ctx, hdr.Kid, keys)
		if kerr == nil {
			cands, kerr = keys.candidates(hdr.Kid, hdr.Alg)
		}
	}
	if kerr != nil {
		var e *Error
		if errors.As(kerr, &e) {
			return nil, iss, e
		}
		if kerr == errNoSuchKid {
			return nil, iss, errorf(ReasonUnknownKey, "key id %s is not among the keys of issuer %s",
				quote(hdr.Kid), quote(iss.cfg.Issuer))
		}
		return nil, iss, errorf(ReasonUnknownKey, "key lookup for issuer %s: %v", quote(iss.cfg.Issuer), kerr)
	}
	digest := signatureDigest(hdr.Alg, input)
	verified := false
	for _, k := range cands {
		if verifySignature(hdr.Alg, k.key, input, digest, sig) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, iss, errorf(ReasonBadSignature, "signature does not verify with key %s of issuer %s",
			quote(hdr.Kid), quote(iss.cfg.Issuer))
	}

	claims, err := decodeClaims(payload)
	if err != nil {
		return nil, iss, errorf(ReasonMalformed, "token claims are malformed: %v", err)
	}
	id, cerr := v.checkClaims(iss, claims, now)
	if cerr != nil {
		return nil, iss, cerr
	}
	if v.cache != nil && now.Before(id.Expiry) {
		v.cache.Add(cacheKey, &cacheEntry{id: id, iss: iss, keys: keys})
	}
	return id, iss, nil
}

// decodeClaims decodes a verified payload with numbers as json.Number.
func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	// Decoding into an interface builds the map without reflection.
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	claims, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("payload is not a JSON object")
	}
	if len(bytes.TrimLeft(payload[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, errors.New("payload has data after the JSON object")
	}
	return claims, nil
}

const maxQuoted = 120

// quote renders an untrusted value for an error message: quoted and cut to
// a bounded length, so a hostile token cannot flood a log line.
func quote(s string) string {
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func quoteBytes(b []byte) string {
	s := string(b)
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return s
}
