// Package bill computes what an attempt of a task owes from the billing
// terms its agreement fixed and the usage it reported. The ledger applies
// it on every replica when an attempt ends, so it is pure and small:
// float64 arithmetic without fused operations, the same on every
// platform Go supports.
package bill
