package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// jsonOutput reports whether --output json was asked for.
func jsonOutput(c *cli.Context) (bool, error) {
	switch o := c.String("output"); o {
	case "table", "":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, withCode(exitUsage, fmt.Errorf("--output %q is unknown; use table or json", o))
	}
}

// render prints v as indented JSON with --output json, else calls table
// with a tab writer that is flushed afterwards.
func render(c *cli.Context, v any, table func(w io.Writer)) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}
