package decision

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"sync"
	"time"
)

// Defaults of the whole-decision cache.
const (
	// DefaultCacheSize is the number of decisions kept when
	// Options.CacheSize is zero.
	DefaultCacheSize = 10000
	// DefaultCacheTTL is how long a cached decision may answer when
	// Options.CacheTTL is zero.
	DefaultCacheTTL = time.Minute
)

// cacheShards spreads the cache over independently locked parts so that
// concurrent decisions rarely wait for each other.
const cacheShards = 16

// revisioner is implemented by evaluators that can name their serving
// policy revision cheaply; *policy.Engine is one. Without it, decisions are
// not cached, since a cached answer could outlive its policy.
type revisioner interface {
	Revision() string
}

// cacheKey is the SHA-256 of everything a decision depends on: the raw
// token, the policy revision, the canonical request context and the
// explain flag.
type cacheKey [sha256.Size]byte

// cacheEntry is a decision without its per-call id and timing, and the
// time it stops being valid.
type cacheEntry struct {
	dec     Decision
	expires time.Time
}

// cache keeps recent successful decisions. It is bounded: each shard holds
// at most its share of the size and evicts in insertion order (a ring of
// keys), so a hit neither allocates nor reorders anything. Entries expire at
// the token's exp or after the TTL, whichever comes first; a changed policy
// revision changes the key, so stale revisions simply stop being asked for
// and age out. Errors are never stored.
type cache struct {
	ttl    time.Duration
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu   sync.Mutex
	m    map[cacheKey]*cacheEntry
	ring []cacheKey // insertion order; len grows to cap, then wraps
	next int        // the ring slot to overwrite next once full
}

// newCache returns a cache of about size entries in total.
func newCache(size int, ttl time.Duration) *cache {
	per := max(1, (size+cacheShards-1)/cacheShards)
	c := &cache{ttl: ttl}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*cacheEntry)
		c.shards[i].ring = make([]cacheKey, 0, per)
	}
	return c
}

// keyBufs holds buffers for the key material, so that hashing a request
// allocates nothing (converting the token to []byte would copy it).
var keyBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

// key derives the cache key of req under revision rev. ok is false when the
// request cannot be keyed (a context that does not encode to JSON), in
// which case it is decided without the cache.
func (c *cache) key(req *Request, rev string) (k cacheKey, ok bool) {
	var ctxJSON []byte
	if len(req.Context) > 0 {
		// encoding/json sorts map keys at every level: a canonical form.
		b, err := json.Marshal(req.Context)
		if err != nil {
			return k, false
		}
		ctxJSON = b
	}
	bp := keyBufs.Get().(*[]byte)
	// Lengths first, so that no two different requests concatenate alike.
	b := appendLen((*bp)[:0], len(req.IDToken))
	b = appendLen(b, len(rev))
	b = appendLen(b, len(ctxJSON))
	b = append(b, req.IDToken...)
	b = append(b, rev...)
	b = append(b, ctxJSON...)
	if req.Explain {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	k = sha256.Sum256(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		keyBufs.Put(bp)
	}
	return k, true
}

func appendLen(b []byte, n int) []byte {
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}

func (c *cache) shard(k cacheKey) *cacheShard { return &c.shards[k[0]%cacheShards] }

// get returns a copy of the cached decision for k, valid at now.
func (c *cache) get(k cacheKey, now time.Time) (*Decision, bool) {
	s := c.shard(k)
	s.mu.Lock()
	e, ok := s.m[k]
	if ok && !now.Before(e.expires) {
		delete(s.m, k)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	d := e.dec
	return &d, true
}

// put stores d, stripped of its id and timing, under k until the earlier of
// its expiry and now plus the TTL.
func (c *cache) put(k cacheKey, d *Decision, now time.Time) {
	expires := now.Add(c.ttl)
	if d.ExpiresAt.Before(expires) {
		expires = d.ExpiresAt
	}
	if !now.Before(expires) {
		return
	}
	e := &cacheEntry{dec: *d, expires: expires}
	e.dec.ID = ""
	e.dec.Timing = Timing{}

	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		s.m[k] = e
		return
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, k)
	} else {
		// A slot may name a key already expired and deleted, or (after
		// an expiry and a re-insertion) a key that also sits in a later
		// slot; deleting it early is harmless, and the map never holds
		// more entries than the ring has slots.
		delete(s.m, s.ring[s.next])
		s.ring[s.next] = k
		s.next = (s.next + 1) % len(s.ring)
	}
	s.m[k] = e
}

// len returns the number of entries held, expired ones included.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
