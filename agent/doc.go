// Package agent is pcm's composition root: it wires the mesh (libp2p host,
// adverts, resource table), the ledger (consensus), the rules and the
// drivers into one running agent, and serves the local HTTP API and, at /,
// the mesh's web page (package web, which reads the agent through the same
// /v1 handlers).
//
// The task path lives in rooms of its own, each behind a small interface
// the agent fills in (rooms.go, ledgerlink.go):
//   - negotiate: the /pcm/negotiate/1.1.0 wire (and 1.0.0's signed
//     envelopes, for earlier agents);
//   - broker: negotiates the tasks submitted here and follows them to the
//     end (leases, settlements, re-placement);
//   - provider: bids, co-signs agreements, runs attempts, renews leases;
//   - tasks: the broker's task records and their store;
//   - results, web: outputs over the mesh, and the page.
//
// What stays here: configuration, start-up and Close, the advert, the
// ledger's membership, frameworks, the HTTP API and the /pcm/task and
// /pcm/submit streams, access rules, results glue and metrics.
//
// Invariants:
//   - the HTTP API listens on a loopback address unless a token is
//     configured, and then every request must carry it (the web page: its
//     session cookie, set by its login form from the same token);
//   - the advert this agent publishes is computed from its drivers'
//     fingerprints, so capacity in the mesh is what the drivers can admit;
//   - while the API listens, <data-dir>/api.json names its URL and this
//     agent's peer id (APIFile), so a client given the data dir reaches this
//     agent and no other; Close removes it;
//   - the API refuses before any handler runs: a wrong method (405 with
//     Allow), an over-long id (400, not echoed), an unknown or malformed
//     query parameter (400) (apicheck.go);
//   - /pcm/task and /pcm/submit answer a malformed request with ok:false;
//     only an unreadable frame resets the stream (streamreq.go);
//   - results (results*.go, package results): a task's outputs are
//     collected by its provider's driver into one archive whose digest the
//     final ledger event carries; an archive is sent over
//     /pcm/results/1.0.0 only to a peer entitled to that task's results
//     (or, as an input, to the provider of a task whose submitter is), a
//     fetched archive is kept only once it hashes to the ledger's digest,
//     and every kept archive is provided on the DHT (pcm:results:<digest>);
//   - the DHT keys an agent provides (its drivers, the frameworks it
//     adheres to, its GPU models, its results) are provided again every
//     reprovide_interval (capabilities.go, mesh/provide.go).
//
// PlanTask (POST /v1/tasks/plan) is a submission's dry run: every known
// provider sorted into fits now / fits once capacity frees / never, with
// the rules that rule it out; nothing is queued.
//
// Performance notes: a task costs a synced task-store write when it is
// submitted and when it is placed (shared by concurrent writers), one
// raft commit, and three to four stream round trips to each of K
// candidates, each message Ed25519-signed and verified (once per process:
// mesh/sigcache.go); README.md has the measured figures.
package agent
