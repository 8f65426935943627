// Package resultstest holds helpers for tests of results transfers:
// damaging a stored archive the way a bad disk or a lying holder would.
package resultstest
