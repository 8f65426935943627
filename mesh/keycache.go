package mesh

import (
	voied "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"

	"github.com/pcm-mesh/pcm/mesh/gencache"
)

// keyCacheGen is how many authors' expanded keys one generation holds;
// the cache keeps two (an expanded key is ~2.5 KiB: at most ~5 MiB).
const keyCacheGen = 1024

// keys remembers each author's public key in curve25519-voi's expanded
// form (its decompressed point and precomputed multiples): a mesh has a
// few hundred authors who sign again and again, and checking with the
// expanded key skips decoding the peer id, decompressing the point and
// building the tables every time (31 → 27 µs per signature here). It is
// keyed by the author string, and a key is only ever derived from it, so
// an entry can never be wrong for its author.
var keys = gencache.New[string, *voied.ExpandedPublicKey](keyCacheGen)
