package agent_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/testnet"
)

// TestStopEndsLedgerStreamsFirst: a ledger stream whose peer never sends
// its request is closed when the agent stops, and the stop waits for its
// handler, so no handler reads the state database after it is closed (a
// stopping agent crashed so, in Badger's unmapped tables).
func TestStopEndsLedgerStreamsFirst(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	m.WaitForMesh(10 * time.Second)
	client, server := net.Pipe()
	m.Nodes[0].Agent().ServeLedgerConn(server)
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, client) // until the agent closes its end
		close(ended)
	}()
	stopped := make(chan struct{})
	go func() {
		m.Stop(0)
		close(stopped)
	}()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent stopped (or is stopping) with a ledger stream still open")
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop within 30 s")
	}
}
