package mesh

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Peers see "pcm" (or the configured pcm/<version>) as the agent version
// in identify, and advert sequence numbers stay below 2^53 so that
// JavaScript's JSON.parse reads them exactly.
func TestIdentifyAgentAndSeqPrecision(t *testing.T) {
	a := startNode(t, nil, nil)
	b := startNode(t, a.Addrs()[:1], nil)
	aid, err := peer.Decode(a.Identity().ID())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "identify of a at b", func() bool {
		v, err := b.Host().Peerstore().Get(aid, "AgentVersion")
		return err == nil && v == "pcm"
	})
	for range 3 {
		if ad := a.NextAdvert(); ad.Seq >= 1<<53 || ad.Seq < uint64(time.Now().Add(-time.Minute).UnixMicro()) {
			t.Fatalf("seq %d: want unix microseconds, below 2^53", ad.Seq)
		}
	}
}
