package token

import (
	"container/list"
	"crypto/sha256"
	"sync"
)

// tokenCache keeps recently verified tokens, keyed by the SHA-256 of the
// raw token, evicting the least recently used entry when full. Only
// successes are stored; the caller checks expiry on every hit.
type tokenCache struct {
	mu    sync.Mutex
	size  int
	ll    *list.List // of *cacheEntry, most recently used first
	items map[[sha256.Size]byte]*list.Element
}

type cacheEntry struct {
	key  [sha256.Size]byte
	id   *Identity
	iss  *issuer
	keys *keySet // the key set the token was verified with
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, ll: list.New(), items: make(map[[sha256.Size]byte]*list.Element, size)}
}

func (c *tokenCache) get(k [sha256.Size]byte) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry), true
}

func (c *tokenCache) put(k [sha256.Size]byte, e *cacheEntry) {
	e.key = k
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(e)
	for c.ll.Len() > c.size {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
	}
}

func (c *tokenCache) remove(k [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.ll.Remove(el)
		delete(c.items, k)
	}
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
