package negotiate

import (
	"bufio"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/mesh"
)

// A provider of an earlier version speaks only ProtocolSigned: the pool
// gives each negotiation with it a stream of its own and signs; with a
// current one it opens one session for all.
func TestPoolFallsBackToSignedStreamsForEarlierProviders(t *testing.T) {
	brokerID, _ := mesh.GenerateIdentity()
	b, err := libp2p.New(libp2p.Identity(brokerID.PrivKey()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	newProvider := func(p protocol.ID, serve network.StreamHandler) peer.ID {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		h.SetStreamHandler(p, serve)
		if err := b.Connect(t.Context(), peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
			t.Fatal(err)
		}
		return h.ID()
	}
	signedCFPs := make(chan bool, 4)
	old := newProvider(ProtocolSigned, func(s network.Stream) { // one negotiation per stream, signed
		defer s.Close()
		env, err := ReadEnv(bufio.NewReader(s))
		var cfp CFP
		signed := err == nil && Open(env, KindCFP, brokerID.ID(), &cfp) == nil
		signedCFPs <- signed
		if signed {
			_ = WriteEnv(s, Envelope{Kind: KindDecline, Payload: []byte(`{"v":1}`)})
		}
	})
	sessions := make(chan struct{}, 4)
	current := newProvider(Protocol, func(s network.Stream) {
		sessions <- struct{}{}
		_ = NewSession(s, s.Reset, false).Serve(func(x Exchange) {
			defer x.Close()
			env, _ := x.Recv(context.Background())
			var cfp CFP
			_ = (Wire{}).Open(env, KindCFP, "", &cfp)
			d, _ := Plain(KindDecline, DeclineMsg{V: 1, CFP: cfp.ID})
			_ = x.Send(d)
		})
	})
	waitProtocols := func(id peer.ID, p protocol.ID) {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if ps, _ := b.Peerstore().SupportsProtocols(id, p); len(ps) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("identify never told the broker that %s speaks %s", id, p)
			}
		}
	}
	waitProtocols(old, ProtocolSigned)
	waitProtocols(current, Protocol)
	dial := func(ctx context.Context, id string, ps ...protocol.ID) (network.Stream, error) {
		pid, err := peer.Decode(id)
		if err != nil {
			return nil, err
		}
		return b.NewStream(ctx, pid, ps...)
	}
	pool := NewPool(dial, brokerID)
	defer pool.Close()
	for i, to := range []peer.ID{old, old, current, current} {
		id := "c" + string(rune('0'+i))
		x, w, err := pool.Open(t.Context(), to.String(), id)
		if err != nil {
			t.Fatal(err)
		}
		env, err := w.Seal(KindCFP, CFP{V: 1, ID: id, Broker: brokerID.ID()})
		if err != nil {
			t.Fatal(err)
		}
		if err := x.Send(env); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		resp, err := x.Recv(ctx)
		cancel()
		_ = x.Close()
		if err != nil || resp.Kind != KindDecline {
			t.Fatalf("negotiation %s with %s: %q, %v; want its decline", id, to, resp.Kind, err)
		}
		if w.Signed != (to == old) {
			t.Errorf("negotiation %s with %s: signed %v", id, to, w.Signed)
		}
	}
	if n := len(signedCFPs); n != 2 {
		t.Errorf("the earlier provider got %d streams, want 2 (one per negotiation)", n)
	}
	for range len(signedCFPs) {
		if !<-signedCFPs {
			t.Error("the earlier provider got an unsigned CFP")
		}
	}
	if n := len(sessions); n != 1 {
		t.Errorf("the current provider got %d sessions for 2 negotiations, want 1", n)
	}
}
