package token

// cacheEntry is a verified token in the verifier's cache, keyed by the
// SHA-256 of the raw token (internal/lru evicts the least recently used
// when full). Only successes are stored; the caller checks expiry and the
// key set on every hit.
type cacheEntry struct {
	id   *Identity
	iss  *issuer
	keys *keySet // the key set the token was verified with
}
