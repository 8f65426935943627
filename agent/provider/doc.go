// Package provider is an agent's provider side: it answers calls for
// proposals on /pcm/negotiate/1.1.0 (package negotiate) with a bid or the
// reasons it declines, holds the bid's capacity until the award or its
// expiry, co-signs the agreement, runs committed agreements through its
// drivers, renews each attempt's lease with its broker, and records the
// attempt's events (started, then succeeded, failed or cancelled) in the
// ledger.
//
// Invariants:
//   - a CFP is evaluated and its capacity reserved under one lock, so two
//     CFPs never both take the last free capacity; tentative holds live
//     holdTTL, confirmed ones until the driver counts the task;
//   - a task runs here only on a committed agreement naming this provider
//     (from the stream's "committed", checked against the ledger, or from
//     the ledger subscription), and only once per agreement;
//   - an attempt whose lease could not be renewed in time is stopped and
//     records no outcome (self-fencing, lease.go); a newer agreement for
//     the same task stops it too;
//   - event ids are "<agreement>/<event>", so a retried or recovered event
//     is the same ledger entry;
//   - attempts outlive the agent process: Recover re-attaches to driver
//     tasks after a restart.
package provider
