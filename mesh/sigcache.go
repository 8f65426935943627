package mesh

import (
	"crypto/sha256"

	"github.com/pcm-mesh/pcm/mesh/gencache"
)

// sigCacheGen is how many verified signatures one generation of the cache
// holds; the cache keeps two (at most ~2×8k keys of 32 bytes).
const sigCacheGen = 8192

// verified remembers signatures that verified in this process, so the
// same signed bytes are checked once however many times they are seen: a
// ledger entry is validated when it is proposed, when it is forwarded and
// when every local replica applies it; an agreement's signatures are
// checked in negotiation and again in the ledger. Only successes are kept,
// keyed by a hash of signer, domain, payload and signature together, so a
// forged or altered message never matches a cached one.
var verified = gencache.New[[32]byte, struct{}](sigCacheGen)

func sigKey(author, domain string, payload, sig []byte) [32]byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(author), []byte(domain), payload, sig} {
		var n [8]byte
		for i, l := 0, uint64(len(part)); i < 8; i++ {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:]) // length-prefixed: no two splits hash alike
		h.Write(part)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}
