package mesh

import (
	"fmt"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Capability keys providers announce on the DHT.
const (
	KeyDriverPrefix    = "pcm:driver:"
	KeyFrameworkPrefix = "pcm:framework:"
	KeyGPUPrefix       = "pcm:gpu:"
	// KeyResultsPrefix + a results digest: agents holding that archive.
	KeyResultsPrefix = "pcm:results:"
)

// KeyCID is a capability key's DHT id: the CIDv1 (raw codec) of the
// sha2-256 multihash of the key's UTF-8 bytes.
func KeyCID(key string) (cid.Cid, error) {
	h, err := mh.Sum([]byte(key), mh.SHA2_256, -1)
	if err != nil {
		return cid.Undef, fmt.Errorf("hash capability key %q: %w", key, err)
	}
	return cid.NewCidV1(cid.Raw, h), nil
}
