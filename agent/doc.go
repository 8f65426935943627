// Package agent is pcm's composition root: it wires the mesh (libp2p host,
// adverts, resource table), the ledger (consensus), the rules and the
// drivers into one running agent, and serves the local HTTP API and web page.
//
// Invariants:
//   - the HTTP API listens on a loopback address unless a token is
//     configured, and then every request must carry it;
//   - the advert this agent publishes is computed from its drivers'
//     fingerprints, so capacity in the mesh is what the drivers can admit.
//
// Performance notes: a placement costs two synced broker-store writes
// (queued, placed), one raft commit and three to four stream round trips
// to each of K candidates, each message Ed25519-signed and verified. On a
// 2-core machine with ~3 ms fsyncs that gives p50 ≈ 17 ms and ~80
// placements/s; the next steps are group commit for the broker store,
// fewer signature checks per award, and a smaller K for cheap tasks.
package agent
