// Package broker is an agent's broker side: it takes the tasks submitted
// to the agent, negotiates each with providers over /pcm/negotiate/1.1.0
// (package negotiate), commits the agreement to the ledger, follows the
// attempt through the ledger's events, settles it, and places the task
// again when an attempt fails with retries left or its provider is lost.
//
// Invariants:
//   - an agreement id is unique per task attempt ("<task>-a<attempt>"), so
//     at most one agreement per attempt can commit; a proposal whose
//     outcome is unknown is resolved by reading the ledger (adopt), never
//     by proposing another;
//   - an attempt is declared lost only after its provider has not renewed
//     its lease for the lease plus half of it (lease.go), so a provider
//     that cannot renew fences itself first; a broker that was itself
//     stalled restarts every lease from then;
//   - each ended attempt is settled once, for what that attempt used
//     (settlement id "<agreement>/settle");
//   - a task record is synced before what acknowledges it is answered
//     (submission, placement, outcome: package tasks).
//
// Placement at scale: adverts are periodic and reach every broker at
// once, so a broker amends them with what it learned since (capacity it
// awarded, providers that declined for want of capacity: view.go), and
// equal providers are ranked in a per-task order. At most
// maxParallelRounds rounds run at once; a task declined for want of
// capacity parks in a FIFO gate (gate.go) woken by attempt ends in the
// ledger and adverts that show free capacity, instead of backing off
// blindly. Losing bidders are released as soon as the winner confirms.
package broker
