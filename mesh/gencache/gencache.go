package gencache

import "sync"

// Cache is a two-generation bounded map, safe for concurrent use.
type Cache[K comparable, V any] struct {
	n        int
	mu       sync.Mutex
	cur, old map[K]V
}

// New makes a cache of two generations of n entries.
func New[K comparable, V any](n int) *Cache[K, V] {
	return &Cache[K, V]{n: max(1, n), cur: make(map[K]V)}
}

// Get returns the value stored under k.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		c.putLocked(k, v)
	}
	return v, ok
}

// Put stores v under k.
func (c *Cache[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v)
}

func (c *Cache[K, V]) putLocked(k K, v V) {
	if len(c.cur) >= c.n {
		c.old, c.cur = c.cur, make(map[K]V, c.n)
	}
	c.cur[k] = v
}

// Len is how many entries are held.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}

// Clear forgets everything.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.old = make(map[K]V), nil
}
