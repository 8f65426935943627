package agent

import "net"

// DropResults removes a held archive (tests: make the next fetch go to
// the mesh again).
func (a *Agent) DropResults(digest string) { a.res.store.Remove(digest) }

// ServeLedgerConn serves one ledger stream as the agent's listener would
// (tests: a stream whose peer never writes).
func (a *Agent) ServeLedgerConn(conn net.Conn) { a.serveLedgerConn(conn) }
