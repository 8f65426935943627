package agent

import (
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcm-mesh/pcm/agent/negotiate"
)

// Stream protocols the agent serves (documented in PROTOCOL.md).
const (
	NegotiateProtocol             = negotiate.Protocol
	TaskProtocol      protocol.ID = "/pcm/task/1.0.0"
	SubmitProtocol    protocol.ID = "/pcm/submit/1.0.0"
)

// maxFrame bounds every task and submit frame, and task documents.
const maxFrame = 256 << 10
