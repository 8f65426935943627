package rows

import (
	"fmt"
	"os"
)

// Row is one line of the reliability table.
type Row struct {
	Scenario   string
	Operations string
	// Faults defaults to PCM_ROW_FAULTS, or "none".
	Faults          string
	Acked           int64
	Lost, Duplicate int64
	Verify          string
}

// Append writes r to the file named by PCM_ROWS, if set.
func Append(r Row) error {
	name := os.Getenv("PCM_ROWS")
	if name == "" {
		return nil
	}
	if r.Faults == "" {
		r.Faults = os.Getenv("PCM_ROW_FAULTS")
	}
	if r.Faults == "" {
		r.Faults = "none"
	}
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("PCM_ROWS: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n",
		r.Scenario, r.Operations, r.Faults, r.Acked, r.Lost, r.Duplicate, r.Verify)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("PCM_ROWS %s: %w", name, err)
	}
	return nil
}
