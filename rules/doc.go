// Package rules holds pcm's rule frameworks and task documents, the CEL
// expressions inside them, the placement strategies, and pricing.
//
// A Framework (FRAMEWORK.md) defines resource templates, the operations a
// task may request, an admission rule over the task and its submitter, a
// provider rule over provider adverts, placement (strategy, candidates, bid
// timeout), pricing, settlement and an SLA. A Task (TASK.md) asks for
// resources under one framework. ParseFramework and ParseTask read YAML or
// JSON strictly and report every problem as "file:line: field.path: message"
// (an *ErrorList of FieldErrors, each wrapping a sentinel from errors.go).
//
// Invariants:
//   - Pure and deterministic: no I/O, no goroutines, no clock (time is an
//     argument). The same inputs give the same evaluations, rankings, bills
//     and ids on every agent.
//   - A Framework's id is "fw1-" + base32(sha256(Canonical())): any change of
//     content is a new id; formatting, key order and spelled-out defaults are
//     not. SignedFramework.Verify checks id, signature and canonical form.
//   - Expressions are compiled and type-checked once at load; one whose
//     worst-case cost estimate exceeds CostLimit is rejected, and evaluation
//     is also stopped at CostLimit, so a hostile expression cannot hang an
//     agent.
//   - Evaluation never errors: every failed rule comes back as a Failure
//     naming the rule and the values that failed it.
//   - Strategies break ties by provider id; ranking does not depend on input
//     order.
//   - Money is int64 micros of the framework's currency.
//   - A validated Framework or Task is immutable and safe for concurrent use.
package rules
