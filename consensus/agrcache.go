package consensus

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/pcm-mesh/pcm/mesh/gencache"
)

// Cache sizes, per generation (gencache keeps two).
const (
	// agrCacheGen bounds the decoded agreements the FSM keeps, by
	// agreement id and by record index (a task's latest agreement is
	// found by index). Agreements never change once applied; Restore
	// clears the cache.
	agrCacheGen = 4096
	// verifiedCacheGen bounds the entries this process checked at
	// propose (signatures and schema), kept with their decoded payload.
	verifiedCacheGen = 1 << 15
)

func newAgrCache() *gencache.Cache[any, *Agreement] {
	return gencache.New[any, *Agreement](agrCacheGen)
}

// verifiedCache remembers entries whose signatures this process checked
// at propose, with their decoded payloads, so applying them does not
// check or decode them again. Keyed by a digest of the whole entry
// (type, payload and signatures), so a changed entry never matches.
type verifiedCache struct {
	c *gencache.Cache[[32]byte, payload]
}

func newVerifiedCache() verifiedCache {
	return verifiedCache{gencache.New[[32]byte, payload](verifiedCacheGen)}
}

func entryDigest(e *Entry) [32]byte {
	b, _ := hex.DecodeString(ChainHash(GenesisHash, 0, e))
	var d [32]byte
	copy(d[:], b)
	return sha256.Sum256(d[:])
}

func (c verifiedCache) add(e *Entry, p payload) { c.c.Put(entryDigest(e), p) }

// get returns e's decoded payload if this process verified e.
func (c verifiedCache) get(e *Entry) (payload, bool) { return c.c.Get(entryDigest(e)) }
