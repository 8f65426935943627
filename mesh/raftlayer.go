package mesh

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"
)

// Stream protocols owned by other packages but carried here.
const (
	RaftProtocol   protocol.ID = "/pcm/raft/1.0.0"
	LedgerProtocol protocol.ID = "/pcm/ledger/1.0.0"
)

// RaftLayer is a raft.StreamLayer over libp2p streams: raft server
// addresses are peer ids.
type RaftLayer struct {
	node *Node
	net.Listener
}

var _ raft.StreamLayer = (*RaftLayer)(nil)

// RaftLayer listens for raft streams on RaftProtocol.
func (n *Node) RaftLayer() (*RaftLayer, error) {
	l, err := n.Listen(RaftProtocol)
	if err != nil {
		return nil, err
	}
	return &RaftLayer{node: n, Listener: l}, nil
}

// Dial opens a raft stream to the peer whose id is address.
func (r *RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.node.DialConn(ctx, string(address), RaftProtocol)
}

// Listen accepts streams of protocol p as net.Conns.
func (n *Node) Listen(p protocol.ID) (net.Listener, error) {
	l, err := gostream.Listen(n.host, p)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p, err)
	}
	return l, nil
}

// DialConn opens a stream of protocol p to peer id as a net.Conn, finding
// the peer's addresses in the resource table or the DHT when needed.
func (n *Node) DialConn(ctx context.Context, id string, p protocol.ID) (net.Conn, error) {
	pid, err := n.ensureAddrs(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := gostream.Dial(AllowRelayed(ctx), n.host, pid, p)
	if err != nil {
		return nil, fmt.Errorf("open %s to %s: %w", p, id, err)
	}
	return c, nil
}
