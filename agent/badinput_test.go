package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/agent/negotiate"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/rules"
	"github.com/pcm-mesh/pcm/testnet"
)

func envelope(t *testing.T, id *mesh.Identity, kind string, v any) negotiate.Envelope {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := id.Sign("negotiate/"+kind+"/v1", b)
	if err != nil {
		t.Fatal(err)
	}
	return negotiate.Envelope{Kind: kind, Signer: id.ID(), Payload: b, Sig: sig}
}

// exchange sends envelopes on one negotiate stream and returns the first
// answer's kind, or "" when the provider reset the stream.
func exchange(t *testing.T, h host.Host, to peer.ID, envs ...negotiate.Envelope) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, to, negotiate.Protocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(s)
	kind := ""
	for i, env := range envs {
		if err := mesh.WriteFrame(s, env, 1<<20); err != nil {
			return ""
		}
		var resp negotiate.Envelope
		if err := mesh.ReadFrame(r, &resp, 1<<20); err != nil {
			return ""
		}
		if i == 0 {
			kind = resp.Kind
		}
		if i == len(envs)-1 {
			return resp.Kind
		}
	}
	return kind
}

// Must show 5: bad input is refused with the field named, and forged,
// unknown, expired or replayed negotiation messages change nothing.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	m.WaitForMesh(10 * time.Second)
	prov := m.Nodes[0].Agent()

	_, err := prov.Submit([]byte("name: bad\nresources: {cpu: -1, memory: 1Gi}\ncommand: [\"true\"]\n"), "bad.yaml")
	if err == nil || !strings.Contains(err.Error(), "resources.cpu") {
		t.Fatalf("invalid task: err = %v, want it to name resources.cpu", err)
	}
	if len(prov.Tasks()) != 0 {
		t.Fatal("an invalid task was queued")
	}

	brokerID, h, ai, task := brokerProbe(t, prov)
	other, _ := mesh.GenerateIdentity()
	cfp := func(id string, expires time.Time) negotiate.CFP {
		return negotiate.CFP{V: 1, ID: id, TaskID: "tprobe", Attempt: 1, Framework: rules.DefaultFramework().ID(),
			Task: task.Canonical(), TaskHash: task.Hash(), Broker: brokerID.ID(), Expires: expires}
	}
	headBefore, _ := prov.Ledger().Head()
	soon := time.Now().Add(30 * time.Second)

	if k := exchange(t, h, ai.ID, envelope(t, other, negotiate.KindCFP, cfp("forged", soon))); k != "" {
		t.Errorf("cfp signed by a peer other than the sender got %q", k)
	}
	if k := exchange(t, h, ai.ID, envelope(t, brokerID, negotiate.KindCFP, cfp("old", time.Now().Add(-time.Second)))); k != "" {
		t.Errorf("expired cfp got %q", k)
	}
	first := envelope(t, brokerID, negotiate.KindCFP, cfp("once", soon))
	if k := exchange(t, h, ai.ID, first); k != negotiate.KindBid {
		t.Fatalf("valid cfp got %q, want a bid", k)
	}
	if k := exchange(t, h, ai.ID, first); k != "" {
		t.Errorf("replayed cfp got %q", k)
	}
	award := envelope(t, brokerID, negotiate.KindAward, negotiate.AwardMsg{V: 1, CFP: "never-sent", Agreement: []byte(`{}`)})
	if k := exchange(t, h, ai.ID, envelope(t, brokerID, negotiate.KindCFP, cfp("c2", soon)), award); k != "" {
		t.Errorf("award for an unknown cfp got %q", k)
	}
	if head, _ := prov.Ledger().Head(); head != headBefore {
		t.Errorf("ledger moved from %d to %d", headBefore, head)
	}
	st := prov.Status()
	if st.Peers == 0 {
		t.Fatal("status lost its peer")
	}
}

// brokerProbe is a bare libp2p host, connected to prov, that plays a
// broker, and a task document for its CFPs.
func brokerProbe(t *testing.T, prov *agent.Agent) (*mesh.Identity, host.Host, peer.AddrInfo, *rules.Task) {
	t.Helper()
	id, _ := mesh.GenerateIdentity()
	h, err := libp2p.New(libp2p.Identity(id.PrivKey()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ai, _ := mesh.ParseAddrInfo(prov.Node().Addrs()[0])
	if err := h.Connect(t.Context(), ai); err != nil {
		t.Fatal(err)
	}
	task, err := rules.ParseTask("t.yaml", shellTask("probe", "true"))
	if err != nil {
		t.Fatal(err)
	}
	return id, h, ai, task
}

// answerOn sends one CFP envelope on a stream of protocol p and returns
// the provider's answer (Kind "" when it reset the stream).
func answerOn(t *testing.T, h host.Host, to peer.ID, p protocol.ID, cfp negotiate.Envelope) negotiate.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, to, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	var resp negotiate.Envelope
	if err := mesh.WriteFrame(s, cfp, 1<<20); err != nil {
		return resp
	}
	_ = mesh.ReadFrame(bufio.NewReader(s), &resp, 1<<20)
	return resp
}

// Negotiation 1.1.0 rides unsigned on the authenticated stream; 1.0.0,
// served for earlier agents, still wants every message signed by its
// sender. Neither takes a CFP in another broker's name.
func TestNegotiationOnBothProtocolVersions(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	m.WaitForMesh(10 * time.Second)
	prov := m.Nodes[0].Agent()
	brokerID, h, ai, task := brokerProbe(t, prov)
	other, _ := mesh.GenerateIdentity()
	cfp := func(id, broker string) negotiate.CFP {
		return negotiate.CFP{V: 1, ID: id, TaskID: "t" + id, Attempt: 1, Framework: rules.DefaultFramework().ID(),
			Task: task.Canonical(), TaskHash: task.Hash(), Broker: broker, Expires: time.Now().Add(30 * time.Second)}
	}
	plain := func(c negotiate.CFP) negotiate.Envelope {
		env, err := negotiate.Plain(negotiate.KindCFP, c)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}

	resp := answerOn(t, h, ai.ID, negotiate.Protocol, plain(cfp("p1", brokerID.ID())))
	if resp.Kind != negotiate.KindBid || resp.Signer != "" || len(resp.Sig) != 0 {
		t.Errorf("1.1.0, plain cfp: answer %q signer %q, %d signature bytes; want an unsigned bid", resp.Kind, resp.Signer, len(resp.Sig))
	}
	if k := answerOn(t, h, ai.ID, negotiate.Protocol, plain(cfp("p2", other.ID()))).Kind; k != "" {
		t.Errorf("1.1.0, cfp in another broker's name got %q", k)
	}
	if k := answerOn(t, h, ai.ID, negotiate.ProtocolSigned, plain(cfp("s1", brokerID.ID()))).Kind; k != "" {
		t.Errorf("1.0.0, unsigned cfp got %q", k)
	}
	if k := answerOn(t, h, ai.ID, negotiate.ProtocolSigned, envelope(t, other, negotiate.KindCFP, cfp("s2", brokerID.ID()))).Kind; k != "" {
		t.Errorf("1.0.0, cfp signed by another got %q", k)
	}
	resp = answerOn(t, h, ai.ID, negotiate.ProtocolSigned, envelope(t, brokerID, negotiate.KindCFP, cfp("s3", brokerID.ID())))
	var bid negotiate.BidMsg
	if err := negotiate.Open(resp, negotiate.KindBid, prov.ID(), &bid); err != nil || bid.CFP != "s3" {
		t.Errorf("1.0.0, signed cfp: answer %q, %v; want a bid signed by the provider", resp.Kind, err)
	}
}

// A broker may hold only a few negotiation sessions open at one provider:
// the fifth stream is reset, the four it holds still answer.
func TestProviderBoundsABrokersSessions(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	m.WaitForMesh(10 * time.Second)
	prov := m.Nodes[0].Agent()
	brokerID, h, ai, task := brokerProbe(t, prov)
	cfp := func(id string) negotiate.Envelope {
		env, err := negotiate.Plain(negotiate.KindCFP, negotiate.CFP{V: 1, ID: id, TaskID: "t" + id, Attempt: 1, Framework: rules.DefaultFramework().ID(),
			Task: task.Canonical(), TaskHash: task.Hash(), Broker: brokerID.ID(), Expires: time.Now().Add(30 * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	ask := func(s network.Stream, id string) string {
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		var resp negotiate.Envelope
		if mesh.WriteFrame(s, cfp(id), 1<<20) != nil || mesh.ReadFrame(bufio.NewReader(s), &resp, 1<<20) != nil {
			return ""
		}
		return resp.Kind
	}
	var open []network.Stream
	for i := range 5 {
		s, err := h.NewStream(t.Context(), ai.ID, negotiate.Protocol)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		open = append(open, s)
		kind := ask(s, fmt.Sprintf("s%d", i))
		switch {
		case i < 4 && kind != negotiate.KindBid:
			t.Errorf("session %d: answer %q, want a bid", i+1, kind)
		case i == 4 && kind != "":
			t.Errorf("fifth session: answer %q, want the stream reset", kind)
		}
	}
	// Its holds may have taken the provider's room: a bid or a decline,
	// but an answer.
	if kind := ask(open[0], "again"); kind != negotiate.KindBid && kind != negotiate.KindDecline {
		t.Errorf("first session after the fifth was refused: answer %q, want a bid or a decline", kind)
	}
}
