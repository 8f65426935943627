package testnet

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/consensus"
	"github.com/pcm-mesh/pcm/mesh"
)

// Hostile is a peer with a key of its own that speaks pcm's protocols the
// way an attacker would: it is a real libp2p host on 127.0.0.1 (Noise or
// TLS authenticate it like anyone else) and sends whatever it likes. Tests
// use it to show each attack is refused.
type Hostile struct {
	Host host.Host
	priv crypto.PrivKey

	once sync.Once
	tr   *raft.NetworkTransport
	done chan struct{}
}

// NewHostile starts a hostile peer; it stops when the test ends.
func NewHostile(t testing.TB) *Hostile {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	x := &Hostile{Host: h, priv: priv, done: make(chan struct{})}
	t.Cleanup(x.Close)
	return x
}

// ID is the hostile peer's id.
func (x *Hostile) ID() string { return x.Host.ID().String() }

// Close stops the host.
func (x *Hostile) Close() {
	x.once.Do(func() {
		close(x.done)
		if x.tr != nil {
			_ = x.tr.Close()
		}
		_ = x.Host.Close()
	})
}

// Connect dials an agent by one of its multiaddrs.
func (x *Hostile) Connect(ctx context.Context, a *agent.Agent) error {
	ai, err := mesh.ParseAddrInfo(tcpAddr(a.Node().Addrs()))
	if err != nil {
		return err
	}
	return x.Host.Connect(ctx, ai)
}

// Sign signs payload in domain with the hostile key, as pcm signers do.
func (x *Hostile) Sign(domain string, payload []byte) ([]byte, error) {
	return x.priv.Sign(append([]byte("pcm:"+domain+"\x00"), payload...))
}

var _ consensus.Signer = (*Hostile)(nil)

// Task sends one /pcm/task/1.0.0 request and returns the answer and, for
// logs, whatever output follows it (read until EOF or ctx ends).
func (x *Hostile) Task(ctx context.Context, to string, req agent.TaskRequest) (agent.TaskResponse, []byte, error) {
	var resp agent.TaskResponse
	s, err := x.stream(ctx, to, agent.TaskProtocol)
	if err != nil {
		return resp, nil, err
	}
	defer s.Close()
	req.V = 1
	if err := mesh.WriteFrame(s, req, 256<<10); err != nil {
		return resp, nil, err
	}
	r := bufio.NewReader(s)
	if err := mesh.ReadFrame(r, &resp, 256<<10); err != nil {
		return resp, nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	return resp, body, nil
}

// Submit sends a task document over /pcm/submit/1.0.0; the hostile peer is
// then the task's submitter.
func (x *Hostile) Submit(ctx context.Context, to string, doc []byte) (agent.TaskResponse, error) {
	var resp agent.TaskResponse
	s, err := x.stream(ctx, to, agent.SubmitProtocol)
	if err != nil {
		return resp, err
	}
	defer s.Close()
	if err := mesh.WriteFrame(s, agent.SubmitRequest{V: 1, Name: "hostile.yaml", Document: doc}, 256<<10); err != nil {
		return resp, err
	}
	return resp, mesh.ReadFrame(bufio.NewReader(s), &resp, 256<<10)
}

// Ledger sends one raw JSON request on /pcm/ledger/1.0.0 and decodes the
// answer into a map.
func (x *Hostile) Ledger(ctx context.Context, to string, req any) (map[string]any, error) {
	s, err := x.stream(ctx, to, mesh.LedgerProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := json.NewEncoder(s).Encode(req); err != nil {
		return nil, err
	}
	var resp map[string]any
	err = json.NewDecoder(io.LimitReader(s, 64<<20)).Decode(&resp)
	return resp, err
}

// SignedEntry builds a ledger entry signed by the hostile peer.
func (x *Hostile) SignedEntry(typ, id string, payload any) (consensus.Entry, error) {
	return consensus.NewEntry(typ, id, payload, x)
}

func (x *Hostile) stream(ctx context.Context, to string, p protocol.ID) (io.ReadWriteCloser, error) {
	pid, err := peer.Decode(to)
	if err != nil {
		return nil, err
	}
	s, err := x.Host.NewStream(ctx, pid, p)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	return s, nil
}

// Raft is a hashicorp/raft transport from the hostile host: its RPCs
// (AppendEntries, RequestVote, InstallSnapshot, TimeoutNow) go to an
// agent's /pcm/raft/1.0.0 like a member's would.
func (x *Hostile) Raft() *raft.NetworkTransport {
	if x.tr == nil {
		x.tr = raft.NewNetworkTransport(&hostileLayer{x: x}, 1, 3*time.Second, io.Discard)
	}
	return x.tr
}

// RaftHeader is the RPC header the hostile peer sends.
func (x *Hostile) RaftHeader() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(x.ID()), Addr: []byte(x.ID())}
}

// hostileLayer is a raft.StreamLayer that only dials.
type hostileLayer struct{ x *Hostile }

func (l *hostileLayer) Accept() (net.Conn, error) {
	<-l.x.done
	return nil, errors.New("hostile peer closed")
}
func (l *hostileLayer) Close() error   { return nil }
func (l *hostileLayer) Addr() net.Addr { return hostileAddr(l.x.ID()) }
func (l *hostileLayer) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(a))
	if err != nil {
		return nil, fmt.Errorf("raft address %q: %w", a, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gostream.Dial(ctx, l.x.Host, pid, mesh.RaftProtocol)
}

type hostileAddr string

func (a hostileAddr) Network() string { return "libp2p" }
func (a hostileAddr) String() string  { return string(a) }
