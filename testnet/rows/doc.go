// Package rows appends rows to the reliability table that
// testnet/reliability.sh prints. Tests that take part in the suite call
// Append; outside the suite (PCM_ROWS unset) it does nothing.
package rows
