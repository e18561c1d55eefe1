package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const maxDocumentBytes = 1 << 20

// errNoSuchKid means the key set has no key with the token's kid.
var errNoSuchKid = errors.New("no key with this kid")

// issuer is the state of one trusted identity provider: its configuration
// and its current key set.
type issuer struct {
	cfg     IssuerConfig
	algs    map[string]bool
	algList []string
	v       *Verifier

	// keys is the current key set; nil until the first successful fetch.
	keys atomic.Pointer[keySet]

	mu           sync.Mutex
	inflight     *fetchCall // the fetch running now, shared by all waiters
	lastOnDemand time.Time  // start of the last fetch caused by an unknown kid
	jwksURI      string     // from discovery, or the configured JWKS URL
	lastAttempt  time.Time
	lastSuccess  time.Time
	lastErr      error
	failing      bool
}

// fetchCall is one fetch that concurrent callers wait for together.
type fetchCall struct {
	done   chan struct{}
	err    error
	maxAge time.Duration // from Cache-Control, 0 if absent
}

// keySet is an immutable snapshot of an issuer's usable signing keys.
type keySet struct {
	keys   []verificationKey
	digest [sha256.Size]byte
}

type verificationKey struct {
	kid string
	alg string // the JWK's alg, "" when it names none
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

func newIssuer(cfg IssuerConfig, v *Verifier) (*issuer, []error) {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("issuer: is required"))
	} else if err := validateURL("issuer", cfg.Issuer); err != nil {
		errs = append(errs, err)
	}
	if len(cfg.Audiences) == 0 {
		errs = append(errs, errors.New("audiences: at least one audience is required"))
	}
	for _, a := range cfg.Audiences {
		if a == "" {
			errs = append(errs, errors.New("audiences: an audience is empty"))
		}
	}
	if cfg.JWKSURL != "" {
		if err := validateURL("jwks_url", cfg.JWKSURL); err != nil {
			errs = append(errs, err)
		}
	}
	algList := cfg.Algorithms
	if len(algList) == 0 {
		algList = DefaultAlgorithms
	}
	algs := make(map[string]bool, len(algList))
	for _, a := range algList {
		if _, ok := supportedAlgorithms[a]; !ok {
			errs = append(errs, fmt.Errorf("algorithms: %s is not an allowed algorithm (one of %q)",
				quote(a), supportedList()))
			continue
		}
		algs[a] = true
	}
	for k := range cfg.RequiredClaims {
		if k == "" {
			errs = append(errs, errors.New("required_claims: a claim name is empty"))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	cfg.Audiences = slices.Clone(cfg.Audiences)
	return &issuer{cfg: cfg, algs: algs, algList: slices.Clone(algList), v: v, jwksURI: cfg.JWKSURL}, nil
}

func supportedList() []string {
	out := make([]string, 0, len(supportedAlgorithms))
	for a := range supportedAlgorithms {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// candidates returns the keys that may have signed a token with this kid
// and alg. An empty kid selects every key that fits alg.
func (ks *keySet) candidates(kid, alg string) ([]verificationKey, error) {
	var out []verificationKey
	sawKid := false
	for _, k := range ks.keys {
		if kid != "" && k.kid != kid {
			continue
		}
		sawKid = true
		if keyFits(k, alg) {
			out = append(out, k)
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case kid != "" && !sawKid:
		return nil, errNoSuchKid
	case kid != "":
		return nil, errorf(ReasonAlgorithm, "algorithm %s does not match key %s", quote(alg), quote(kid))
	default:
		return nil, errorf(ReasonUnknownKey, "token names no kid and no key fits algorithm %s", quote(alg))
	}
}

// keyFits reports whether k can verify a signature made with alg: the JWK's
// own alg, when present, must equal it, and the key type and curve must be
// the ones alg uses.
func keyFits(k verificationKey, alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve == elliptic.P256()
		case "ES384":
			return pub.Curve == elliptic.P384()
		case "ES512":
			return pub.Curve == elliptic.P521()
		}
		return false
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func (iss *issuer) unavailable() *Error {
	iss.mu.Lock()
	lastErr := iss.lastErr
	iss.mu.Unlock()
	if lastErr == nil {
		return errorf(ReasonIssuerUnavailable, "keys of issuer %s have not been fetched yet", quote(iss.cfg.Issuer))
	}
	return errorf(ReasonIssuerUnavailable, "keys of issuer %s are unavailable: %v", quote(iss.cfg.Issuer), lastErr)
}

// refetchForKid fetches the key set again because a token names kid, which
// the key set seen lacks. Such fetches are coalesced with any fetch in flight and
// rate-limited to one per RefetchInterval, so forged kids cost the identity
// provider little.
func (iss *issuer) refetchForKid(ctx context.Context, kid string, seen *keySet) (*keySet, error) {
	iss.mu.Lock()
	if cur := iss.keys.Load(); cur != seen {
		// Someone else fetched meanwhile; look in the newer set first.
		iss.mu.Unlock()
		return cur, nil
	}
	call := iss.inflight
	if call == nil {
		now := time.Now()
		if !iss.lastOnDemand.IsZero() && now.Sub(iss.lastOnDemand) < iss.v.opts.RefetchInterval {
			iss.mu.Unlock()
			iss.v.metrics.refetchLimited(iss)
			return nil, errorf(ReasonUnknownKey,
				"key id %s is not among the keys of issuer %s (key refetch rate-limited)",
				quote(kid), quote(iss.cfg.Issuer))
		}
		iss.lastOnDemand = now
		call = iss.startFetchLocked(iss.v.baseCtx())
	}
	iss.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, errorf(ReasonUnknownKey, "key id %s of issuer %s: waiting for key refetch: %v",
			quote(kid), quote(iss.cfg.Issuer), ctx.Err())
	}
	if ks := iss.keys.Load(); ks != nil {
		return ks, nil
	}
	return nil, iss.unavailable()
}

// fetch fetches the key set, joining a fetch already in flight.
func (iss *issuer) fetch(ctx context.Context) *fetchCall {
	iss.mu.Lock()
	call := iss.inflight
	if call == nil {
		call = iss.startFetchLocked(ctx)
	}
	iss.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
	}
	return call
}

// startFetchLocked starts a fetch in its own goroutine. iss.mu must be held.
func (iss *issuer) startFetchLocked(ctx context.Context) *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	iss.inflight = call
	go func() {
		ks, maxAge, err := iss.download(ctx)
		iss.record(ks, err)
		call.err, call.maxAge = err, maxAge
		iss.mu.Lock()
		iss.inflight = nil
		iss.mu.Unlock()
		close(call.done)
	}()
	return call
}

// record stores the outcome of a fetch, logs state transitions and updates
// metrics.
func (iss *issuer) record(ks *keySet, err error) {
	v := iss.v
	log := v.opts.Logger.With(slog.String("issuer", iss.cfg.Issuer))
	now := time.Now()

	iss.mu.Lock()
	iss.lastAttempt = now
	wasFailing := iss.failing
	if err != nil {
		iss.lastErr = err
		iss.failing = true
		if iss.jwksURI != iss.cfg.JWKSURL {
			iss.jwksURI = "" // discover again next time
		}
	} else {
		iss.lastErr = nil
		iss.failing = false
		iss.lastSuccess = now
	}
	iss.mu.Unlock()

	v.metrics.fetched(iss, err)
	old := iss.keys.Load()
	if err != nil {
		if !wasFailing {
			cached := 0
			if old != nil {
				cached = len(old.keys)
			}
			log.Warn("identity provider keys unavailable", slog.String("error", err.Error()),
				slog.Int("cached_keys", cached))
		}
		return
	}
	if old == nil || old.digest != ks.digest {
		iss.keys.Store(ks)
		log.Info("identity provider keys loaded", slog.Int("keys", len(ks.keys)),
			slog.Any("kids", ks.kids()))
	}
	if wasFailing && old != nil {
		log.Info("identity provider keys available again")
	}
}

func (ks *keySet) kids() []string {
	out := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		out[i] = k.kid
	}
	return out
}

// download performs discovery when needed and fetches the key set.
func (iss *issuer) download(ctx context.Context) (*keySet, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, iss.v.opts.FetchTimeout)
	defer cancel()
	iss.mu.Lock()
	jwksURI := iss.jwksURI
	iss.mu.Unlock()
	if jwksURI == "" {
		u, err := iss.discover(ctx)
		if err != nil {
			return nil, 0, err
		}
		jwksURI = u
		iss.mu.Lock()
		iss.jwksURI = u
		iss.mu.Unlock()
	}
	body, hdr, err := iss.get(ctx, jwksURI)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch key set: %w", err)
	}
	ks, err := parseKeySet(body)
	if err != nil {
		return nil, 0, fmt.Errorf("key set %s: %w", quote(jwksURI), err)
	}
	return ks, maxAge(hdr.Get("Cache-Control")), nil
}

// discover reads the issuer's OIDC discovery document and returns its
// jwks_uri. The document's issuer must equal the configured one exactly.
func (iss *issuer) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(iss.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := iss.get(ctx, u)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery document %s: %w", quote(u), err)
	}
	if doc.Issuer != iss.cfg.Issuer {
		return "", fmt.Errorf("discovery document %s names issuer %s, want %s",
			quote(u), quote(doc.Issuer), quote(iss.cfg.Issuer))
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("discovery document %s has no jwks_uri", quote(u))
	}
	if err := validateURL("jwks_uri", doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery document %s: %w", quote(u), err)
	}
	return doc.JWKSURI, nil
}

func (iss *issuer) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := iss.v.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentBytes))
		return nil, nil, fmt.Errorf("GET %s: status %s", quote(u), quote(resp.Status))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", quote(u), err)
	}
	if len(body) > maxDocumentBytes {
		return nil, nil, fmt.Errorf("GET %s: response exceeds %d bytes", quote(u), maxDocumentBytes)
	}
	return body, resp.Header, nil
}

// parseKeySet keeps the usable signing keys of a JWKS document. Keys that
// go-jose cannot parse, symmetric keys, keys marked use "enc", and RSA keys
// shorter than 2048 bits are skipped; a set with no usable key is an error.
func parseKeySet(body []byte) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	ks := &keySet{digest: sha256.Sum256(body)}
	for _, raw := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		if !jwk.Valid() {
			continue
		}
		if !jwk.IsPublic() {
			jwk = jwk.Public()
		}
		switch k := jwk.Key.(type) {
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		if jwk.Algorithm != "" {
			if _, ok := supportedAlgorithms[jwk.Algorithm]; !ok {
				continue
			}
		}
		ks.keys = append(ks.keys, verificationKey{kid: jwk.KeyID, alg: jwk.Algorithm, key: jwk.Key})
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("no usable signing key among %d keys", len(doc.Keys))
	}
	return ks, nil
}

// maxAge returns the max-age of a Cache-Control header, 0 when it has none.
// no-store and no-cache count as a max-age of zero seconds, which the
// refresh bounds then raise to the minimum interval.
func maxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		name, val, _ := strings.Cut(d, "=")
		switch strings.TrimSpace(name) {
		case "no-store", "no-cache":
			return time.Nanosecond
		case "max-age":
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err != nil || n < 0 {
				return 0
			}
			if n == 0 {
				return time.Nanosecond
			}
			if n > int64(365*24*time.Hour/time.Second) {
				n = int64(365 * 24 * time.Hour / time.Second)
			}
			return time.Duration(n) * time.Second
		}
	}
	return 0
}

// refreshAfter turns a fetch outcome into the wait before the next fetch.
func (v *Verifier) refreshAfter(maxAge time.Duration) time.Duration {
	d := v.opts.RefreshInterval
	if maxAge > 0 {
		d = maxAge
	}
	return min(max(d, v.opts.MinRefreshInterval), v.opts.MaxRefreshInterval)
}

// Start begins fetching the keys of every issuer in the background: at once,
// then again as the key set's Cache-Control max-age says (bounded by the
// refresh interval options), with exponential backoff while an identity
// provider fails. Background work stops when ctx ends. Calls after the
// first do nothing.
func (v *Verifier) Start(ctx context.Context) {
	v.startOnce.Do(func() {
		v.ctx.Store(&ctx)
		for _, iss := range v.order {
			go iss.run(ctx)
		}
	})
}

func (v *Verifier) baseCtx() context.Context {
	if p := v.ctx.Load(); p != nil {
		return *p
	}
	return context.Background()
}

func (iss *issuer) run(ctx context.Context) {
	o := iss.v.opts
	backoff := o.RetryMin
	for {
		call := iss.fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if call.err != nil {
			wait = jitter(backoff)
			backoff = min(backoff*2, o.RetryMax)
		} else {
			wait = jitter(iss.v.refreshAfter(call.maxAge))
			backoff = o.RetryMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// jitter spreads d by up to -10%, so that many instances do not refresh in
// step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

// Ready reports whether every issuer has answered with keys at least once.
func (v *Verifier) Ready() bool {
	for _, iss := range v.order {
		if iss.keys.Load() == nil {
			return false
		}
	}
	return true
}

// IssuerStatus describes the key state of one issuer, for readiness checks
// and diagnostics.
type IssuerStatus struct {
	// Issuer is the configured issuer.
	Issuer string
	// Ready is true once the issuer has answered with keys.
	Ready bool
	// Keys is the number of usable signing keys held now.
	Keys int
	// LastFetch is the time of the last successful fetch, zero if none.
	LastFetch time.Time
	// LastAttempt is the time of the last fetch attempt, zero if none.
	LastAttempt time.Time
	// LastError is the error of the last fetch attempt, empty if it
	// succeeded.
	LastError string
}

// Status returns the key state of every issuer, in configuration order.
func (v *Verifier) Status() []IssuerStatus {
	out := make([]IssuerStatus, 0, len(v.order))
	for _, iss := range v.order {
		st := IssuerStatus{Issuer: iss.cfg.Issuer}
		if ks := iss.keys.Load(); ks != nil {
			st.Ready, st.Keys = true, len(ks.keys)
		}
		iss.mu.Lock()
		st.LastFetch, st.LastAttempt = iss.lastSuccess, iss.lastAttempt
		if iss.lastErr != nil {
			st.LastError = iss.lastErr.Error()
		}
		iss.mu.Unlock()
		out = append(out, st)
	}
	return out
}
