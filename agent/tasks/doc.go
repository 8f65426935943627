// Package tasks is the broker's record of the tasks submitted to an
// agent: the Task with its states, negotiation rounds and history, and
// the Store that keeps those records under "task/" in the agent's state
// database.
//
// Invariants:
//   - a task's state moves queued → negotiating → placed → running → one
//     of the final states (Final); lost and failed attempts go back to
//     queued with the next attempt number while retries last;
//   - a durable Put (a submission, a placement, an outcome: what
//     acknowledges something) is synced before it returns, and syncs are
//     shared by the writers waiting at once (group commit); intermediate
//     states are written together, unsynced, every 200 ms, and reads see
//     them at once;
//   - a task keeps at most 20 round entries (alike rounds fold into one)
//     and 60 history entries (the first ten and the latest).
package tasks
