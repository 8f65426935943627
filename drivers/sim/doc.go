// Package sim is a simulated driver for large testnets and benchmarks: it
// accounts capacity exactly like a real driver but runs nothing. Each
// task's duration and outcome are drawn from a random source seeded with
// Config.Seed and the task id, so a run is deterministic whatever the order
// or timing of starts. Start costs a map insert, a timer and (with a state
// dir) one appended journal line.
//
// Options a task may set to force its outcome (the conformance suite and
// scenario tests use them):
//
//	sim.duration   simulated run time, a Go duration ("1h", "10ms")
//	sim.exit_code  exit code (non-zero: the task fails)
//	sim.output     the task's output (its logs are this plus a newline)
//
// Without sim.output a task's logs are one line,
// "sim: task <id> ran <duration> and exited <code>". Logs appear when
// the task ends (nothing streams while it runs).
//
// Times: a simulated duration d takes d × TimeScale of real time;
// TaskSpec.Timeout is simulated time too.
//
// Invariants: the capacity ledger holds exactly the non-final tasks; with
// a state dir every accepted task is in the journal (tasks.jsonl) before
// Start returns, so Recover after a restart knows every task and, from
// the recorded end time, which ones finished meanwhile.
package sim
