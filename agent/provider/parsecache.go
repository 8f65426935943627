package provider

import (
	"crypto/sha256"
	"sync"

	"github.com/pcm-mesh/pcm/rules"
)

// parsedGen is how many task documents one generation of the provider's
// parse cache holds (it keeps two).
const parsedGen = 1024

// parseCache keeps tasks parsed from CFPs by the hash of their document
// bytes: under load the same task is offered to a provider again and again
// (every round, by several brokers), and parsing and validating it (YAML,
// CEL constraints) cost more than the rest of considering it. A parsed
// task is never modified, so sharing it is safe.
type parseCache struct {
	mu       sync.Mutex
	cur, old map[[32]byte]*rules.Task
}

func (c *parseCache) parse(name string, doc []byte) (*rules.Task, error) {
	k := sha256.Sum256(doc)
	c.mu.Lock()
	t, ok := c.cur[k]
	if !ok {
		t, ok = c.old[k]
	}
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := rules.ParseTask(name, doc)
	if err != nil {
		return nil, err // bad documents are not kept: nobody resends them
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= parsedGen {
		c.old, c.cur = c.cur, make(map[[32]byte]*rules.Task, parsedGen)
	}
	c.cur[k] = t
	return t, nil
}
