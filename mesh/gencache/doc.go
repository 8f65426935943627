// Package gencache is a bounded map for values that never change once
// known (verified signatures, expanded keys, decoded ledger entries): two
// generations of at most N entries each; when the current one is full it
// becomes the old one and the old one is dropped, and an entry found in
// the old generation moves back into the current one. Memory stays
// bounded however long a process runs, and entries in steady use stay.
//
// Invariants:
//   - at most 2×N entries are held;
//   - Get returns only what Put stored under that key.
package gencache
