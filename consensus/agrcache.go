package consensus

import "sync"

// agrCacheGen is how many agreements one generation of agrCache holds;
// the cache keeps two, so memory stays bounded however long the ledger.
const agrCacheGen = 4096

// agrCache keeps decoded agreements the FSM looked up, by agreement id
// and by record index (a task's latest agreement is found by index).
// Agreements never change once applied; Restore clears it.
type agrCache struct {
	mu       sync.Mutex
	cur, old map[any]*Agreement
}

func (c *agrCache) get(k any) (*Agreement, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.cur[k]; ok {
		return a, true
	}
	a, ok := c.old[k]
	return a, ok
}

func (c *agrCache) put(k any, a *Agreement) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= agrCacheGen {
		c.old, c.cur = c.cur, make(map[any]*Agreement, agrCacheGen)
	}
	c.cur[k] = a
}

// clear forgets everything (the FSM's state was replaced).
func (c *agrCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.old = nil, nil
}
