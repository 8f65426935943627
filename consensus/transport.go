package consensus

import (
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// RaftProtocol is the libp2p protocol that carries raft's transport.
const RaftProtocol = "/pcm/raft/1.0.0"

// LedgerProtocol is the libp2p protocol of join, forwarded proposals and
// consistent reads (see PROTOCOL.md).
const LedgerProtocol = "/pcm/ledger/1.0.0"

// NewStreamTransport returns raft's network transport over layer (in
// production: libp2p streams on RaftProtocol, addresses are peer IDs),
// without pipelined replication.
//
// raft v1.8.0's pipeline can wedge: when a follower answers
// Success=false the pipeline's decoder stops, one more send parks on the
// full in-flight queue, and replication to that follower stops for good
// while heartbeats go on (hashicorp/raft#612); shutdown then hangs too.
// We hit it with 100 agents on one machine. Without the pipeline the
// leader sends one AppendEntries batch at a time per follower.
//
// The layer is gated: once the ledger is open, inbound raft streams are
// served and outbound ones dialled only for members of the ledger's raft
// configuration (and, while this node is joining, the peers it joins
// through); everything else is refused and counted (gate.go).
func NewStreamTransport(layer raft.StreamLayer, logger *slog.Logger) raft.Transport {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := newGatedLayer(layer)
	return &StreamTransport{g: g, noPipeline: noPipeline{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  g,
		MaxPool: 4,
		Timeout: 10 * time.Second,
		Logger:  newHCLogger(logger.With("component", "raft-transport")),
	})}}
}

// noPipeline is a NetworkTransport that refuses pipelined replication;
// raft then falls back to one AppendEntries at a time.
type noPipeline struct{ *raft.NetworkTransport }

func (noPipeline) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
