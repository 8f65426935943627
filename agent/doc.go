// Package agent is pcm's composition root: it wires the mesh (libp2p host,
// adverts, resource table), the ledger (consensus), the rules and the
// drivers into one running agent, and serves the local HTTP API and web page.
//
// Invariants:
//   - the HTTP API listens on a loopback address unless a token is
//     configured, and then every request must carry it;
//   - the advert this agent publishes is computed from its drivers'
//     fingerprints, so capacity in the mesh is what the drivers can admit.
package agent
