package agent_test

import (
	"bufio"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/testnet"
)

// /pcm/task/1.0.0 and /pcm/submit/1.0.0 answer {"ok": false, "error"}
// for a request that is not valid (a document that is not base64, an
// unknown version, a field of the wrong type) instead of resetting the
// stream; a valid one still works.
func TestTaskStreamsAnswerBadRequests(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	a := m.Nodes[0].Agent()
	id, _ := mesh.GenerateIdentity()
	h, err := libp2p.New(libp2p.Identity(id.PrivKey()), libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ai, _ := mesh.ParseAddrInfo(a.Node().Addrs()[0])
	if err := h.Connect(t.Context(), ai); err != nil {
		t.Fatal(err)
	}
	ask := func(proto protocol.ID, raw string) (agent.TaskResponse, error) {
		s, err := h.NewStream(t.Context(), ai.ID, proto)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		frame := binary.AppendUvarint(nil, uint64(len(raw)))
		if _, err := s.Write(append(frame, raw...)); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		var resp agent.TaskResponse
		err = mesh.ReadFrame(bufio.NewReader(s), &resp, 1<<20)
		return resp, err
	}
	for _, tc := range []struct {
		proto      protocol.ID
		req, want  string
		wantTaskOK bool
	}{
		{agent.SubmitProtocol, `{"v":1,"name":"x.yaml","document":"not base64!"}`, "not valid standard base64", false},
		{agent.SubmitProtocol, `{"v":2,"name":"x.yaml","document":""}`, "v is 2; this agent speaks v 1", false},
		{agent.TaskProtocol, `{"op":"status","task_id":"t1"}`, "v is missing", false},
		{agent.TaskProtocol, `{"v":1,"op":"status","task_id":7}`, `field "task_id": want a JSON string`, false},
		{agent.TaskProtocol, `[1,2]`, "not a JSON object", false},
		{agent.TaskProtocol, `{"v":1,"op":"ping"}`, "", true},
	} {
		resp, err := ask(tc.proto, tc.req)
		if err != nil {
			t.Errorf("%s %s: no answer (%v), want {ok:false}", tc.proto, tc.req, err)
			continue
		}
		if resp.OK != tc.wantTaskOK || !strings.Contains(resp.Error, tc.want) || resp.V != 1 {
			t.Errorf("%s %s: %+v, want ok=%v and %q", tc.proto, tc.req, resp, tc.wantTaskOK, tc.want)
		}
	}
	if len(a.Tasks()) != 0 {
		t.Error("a bad submission was queued")
	}
}
