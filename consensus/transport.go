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
// production: libp2p streams on RaftProtocol, addresses are peer IDs).
func NewStreamTransport(layer raft.StreamLayer, logger *slog.Logger) raft.Transport {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 4,
		Timeout: 10 * time.Second,
		Logger:  newHCLogger(logger.With("component", "raft-transport")),
	})
}
