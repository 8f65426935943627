// Package results keeps task results archives and moves them between
// agents over the /pcm/results/1.0.0 stream protocol (agent/PROTOCOL.md).
//
// A results archive (drivers/archive) is named by its digest; the task's
// final ledger event binds the digest and size to the signed record, so
// an agent fetching it trusts no holder: it tries holders in turn,
// resumes a cut-short transfer from the next one at the byte it reached,
// and drops a copy whose digest does not match before trying the next.
//
// Parts:
//   - Store: archives on disk (<digest hex>.tar with a JSON sidecar), a
//     partial file per digest being fetched, and eviction by retention age
//     and total size (least recently used first).
//   - Server: answers fetch requests from the Store, after the Authorize
//     callback (the agent's access rules) accepts the requesting peer.
//   - Fetcher: fetches a digest from a list of holders into the Store.
//
// An archive is either a task's results (Meta.AgreementID names the
// attempt whose final event carries the digest) or an upload (Meta.Owner
// names the agent whose user put it there, for its own tasks' inputs).
//
// Invariants: the Store holds only archives whose bytes hash to their
// name; a Server never sends bytes before Authorize accepted the
// authenticated remote peer; Fetch returns only a verified archive.
package results
