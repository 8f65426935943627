package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pcm-mesh/pcm/rules"
	"github.com/urfave/cli/v2"
)

// validateResult is one file's verdict, as printed with --output json.
type validateResult struct {
	File   string             `json:"file"`
	Valid  bool               `json:"valid"`
	ID     string             `json:"id,omitempty"` // framework id or task hash
	Name   string             `json:"name,omitempty"`
	Errors []rules.FieldError `json:"errors,omitempty"`
}

// frameworkValidateCommand is `pcm-agent framework validate FILE...`.
func frameworkValidateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check framework documents offline and print their ids",
		ArgsUsage: "FILE...",
		Action: func(c *cli.Context) error {
			return validateFiles(c, func(file string, data []byte) (string, string, error) {
				f, err := rules.ParseFramework(file, data)
				if err != nil {
					return "", "", err
				}
				return f.ID(), f.Name + "@" + f.Version, nil
			})
		},
	}
}

// taskValidateCommand is `pcm-agent task validate FILE...`.
func taskValidateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check task documents offline (as submit would, except a published framework's admission rules) and print their hashes",
		ArgsUsage: "FILE...",
		Action: func(c *cli.Context) error {
			return validateFiles(c, func(file string, data []byte) (string, string, error) {
				t, err := rules.ParseTask(file, data)
				if err != nil {
					return "", "", err
				}
				// What submit checks too: the built-in framework's admission
				// (a published framework's is checked by the agent at
				// submit), and in any case that the deadline is ahead.
				now := time.Now()
				if def := rules.DefaultFramework(); def.Matches(t.Framework) {
					err = def.Admit(t, rules.Submitter{}, now)
				} else {
					err = t.CheckDeadline(now)
				}
				if err != nil {
					return "", "", err
				}
				return t.Hash(), t.Name, nil
			})
		},
	}
}

// validateFiles parses each argument with parse; it prints ids for valid
// files and every error as FILE:LINE: field.path: message, and exits 2 if
// any file is invalid.
func validateFiles(c *cli.Context, parse func(file string, data []byte) (id, name string, err error)) error {
	if c.NArg() == 0 {
		return withCode(exitUsage, errors.New("give at least one FILE to validate"))
	}
	results := make([]validateResult, 0, c.NArg())
	invalid := 0
	for _, file := range c.Args().Slice() {
		r := validateResult{File: file}
		data, err := os.ReadFile(file)
		if err == nil {
			r.ID, r.Name, err = parse(file, data)
		}
		var list *rules.ErrorList
		switch {
		case err == nil:
			r.Valid = true
		case errors.As(err, &list):
			r.Errors = list.Errors
		default:
			r.Errors = []rules.FieldError{{File: file, Msg: err.Error()}}
		}
		if !r.Valid {
			invalid++
		}
		results = append(results, r)
	}
	err := render(c, results, func(w io.Writer) {
		for _, r := range results {
			if r.Valid {
				fmt.Fprintf(w, "%s\tvalid\t%s\t%s\n", r.File, r.Name, r.ID)
			}
		}
	})
	if err != nil {
		return err
	}
	if invalid > 0 {
		asJSON, _ := jsonOutput(c)
		if !asJSON {
			for _, r := range results {
				for _, fe := range r.Errors {
					fmt.Fprintln(c.App.ErrWriter, fe.Error())
				}
			}
		}
		return withCode(exitUsage, fmt.Errorf("%d of %d files invalid", invalid, len(results)))
	}
	return nil
}
