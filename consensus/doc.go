// Package consensus is pcm's ledger: a hashicorp/raft replicated,
// hash-chained log of signed entries (frameworks, agreements, task events,
// settlements, membership notes) that every replica can verify.
//
// Layout on disk (Config.Dir, normally <data-dir>/ledger): wal/ holds the
// raft log and stable store (hashicorp/raft-wal: segment files, each log
// with a CRC-32C, synced on every append; raft's stable keys in bbolt;
// an earlier version's Badger raft/ is moved into it once), fsm/ is the
// agent's state database (Badger; OpenDB): the applied state under the
// FSM's prefixes and the caller's keys under its own prefix (the agent's
// task records, "task/"); snapshots/ holds raft's file snapshots of the
// FSM's keys.
//
// Invariants:
//
//   - Only entries that pass Entry.Validate (known type, size limit,
//     canonical JSON payload, exactly the required signers, every signature
//     valid for the type's domain) and Config.CheckPayload are proposed, and
//     every replica checks them again when it applies them (signatures this
//     process already checked at propose are not checked twice), with the
//     rules that depend on state: who may author the type (membership: a
//     voter of the configuration in force), attempt fencing (a new
//     agreement only after the previous attempt ended lost or failed; the
//     first final event of an attempt counts). A refused entry takes its raft
//     slot but no chain index and is recorded as refused, identically on
//     every replica.
//   - The raft transport serves and dials members only (gate.go): raft
//     trusts its transport completely, so strangers are refused below it.
//   - Joins are decided from the joiner's own signed request and the
//     authenticated stream peer, under an admission policy (admission.go).
//   - The FSM is deterministic: records get consecutive indexes 1, 2, ...;
//     record n's hash is ChainHash(hash(n-1), n, entry); every replica that
//     applied the same raft logs has the same head and balances.
//   - Idempotency: an id is applied at most once per type. The same id with
//     the same payload is a no-op that returns the original receipt; with a
//     different payload it is rejected. Retrying after ErrOutcomeUnknown is
//     therefore always safe.
//   - Balances: a settlement debits its payer (the agreement's broker) and
//     credits its payee (the provider); balances always sum to zero.
//   - Fencing: for one task, an agreement needs a higher attempt than the
//     latest; LatestAgreement is the one a provider may run.
//   - The leader coalesces concurrent proposals into one raft log (a batch);
//     the FSM applies batches of logs in one Badger transaction and records
//     its raft index with the head, so replay after restart is a no-op.
//
// Membership: the first node bootstraps; others Join through any replica
// (forwarded to the leader over LedgerProtocol, on a session of many
// requests per peer: rpcsession.go). The leader admits up to
// MaxVoters voters, then up to MaxNonVoters non-voters, then answers
// RoleClient. Watching raft's heartbeat observations, it removes a replica
// unreachable for longer than VoterTimeout and promotes a healthy non-voter
// while voters are short.
//
// The wire messages are documented in PROTOCOL.md.
package consensus
