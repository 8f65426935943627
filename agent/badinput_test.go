package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

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

	brokerID, _ := mesh.GenerateIdentity()
	other, _ := mesh.GenerateIdentity()
	h, err := libp2p.New(libp2p.Identity(brokerID.PrivKey()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ai, _ := mesh.ParseAddrInfo(prov.Node().Addrs()[0])
	if err := h.Connect(t.Context(), ai); err != nil {
		t.Fatal(err)
	}
	task, err := rules.ParseTask("t.yaml", shellTask("probe", "true"))
	if err != nil {
		t.Fatal(err)
	}
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
