// Package group coalesces concurrent calls of one function: whoever
// calls while a run is under way is served by the next run, which begins
// once the current one ends (group commit).
package group
