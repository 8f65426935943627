package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// outputFormat is --output: table (the default), json or yaml.
func outputFormat(c *cli.Context) (string, error) {
	switch o := c.String("output"); o {
	case "table", "":
		return "table", nil
	case "json", "yaml":
		return o, nil
	default:
		return "", withCode(exitUsage, fmt.Errorf("--output %q is unknown; use table, json or yaml", o))
	}
}

// jsonOutput reports whether a machine format (json or yaml) was asked
// for, i.e. whether tables and progress notes are to be left out.
func jsonOutput(c *cli.Context) (bool, error) {
	f, err := outputFormat(c)
	return f != "table", err
}

// render prints v as indented JSON or as YAML with the same field names
// and order, else calls table with a tab writer that is flushed afterwards.
func render(c *cli.Context, v any, table func(w io.Writer)) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		return writeYAML(out, v)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// writeYAML writes v's JSON encoding as block YAML: JSON is YAML, so the
// JSON is parsed into a yaml.Node (which keeps the field order) and its
// flow and quoting styles are cleared.
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("encode output as yaml: %w", err)
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return fmt.Errorf("encode output as yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode output as yaml: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		// Keep quotes only where the plain form would read as another type.
		n.Style = 0
	} else {
		n.Style &^= yaml.FlowStyle | yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
