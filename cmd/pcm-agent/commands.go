package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/urfave/cli/v2"
)

// commands lists every subcommand; each lives in a file named for it.
func commands() []*cli.Command {
	return []*cli.Command{
		joinCommand(),
		idCommand(),
		statusCommand(),
		peersCommand(),
		resourcesCommand(),
		meshCommand(),
		resultsTopCommand(),
		submitCommand(),
		loadCommand(),
		tasksCommand(),
		frameworkCommand(),
		ledgerCommand(),
		taskCommand(),
		versionCommand(),
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			return render(c, map[string]string{"version": version}, func(w io.Writer) {
				fmt.Fprintf(w, "pcm-agent %s\n", version)
			})
		},
	}
}

func frameworkCommand() *cli.Command {
	return &cli.Command{
		Name:        "framework",
		Usage:       "rule frameworks: validate, publish, list, show",
		Subcommands: []*cli.Command{frameworkValidateCommand(), frameworkPublishCommand(), frameworkListCommand(), frameworkShowCommand()},
	}
}

func taskCommand() *cli.Command {
	return &cli.Command{
		Name:        "task",
		Usage:       "task documents: validate offline",
		Subcommands: []*cli.Command{taskValidateCommand()},
	}
}

func frameworkPublishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "publish a framework to the mesh's ledger (signed by the running agent)",
		ArgsUsage: "FILE",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "adhere", Usage: "also make the running agent adhere to it"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return withCode(exitUsage, fmt.Errorf("publish needs one framework file"))
			}
			doc, err := os.ReadFile(c.Args().First())
			if err != nil {
				return withCode(exitUsage, err)
			}
			api := newAPIClient(c)
			q := "?name=" + url.QueryEscape(c.Args().First())
			if c.Bool("adhere") {
				q += "&adhere=1"
			}
			var out map[string]string
			if err := api.doRaw(c.Context, http.MethodPost, "/v1/frameworks"+q, bytes.NewReader(doc), &out); err != nil {
				return err
			}
			return render(c, out, func(w io.Writer) { fmt.Fprintf(w, "published %s@%s as %s\n", out["name"], out["version"], out["id"]) })
		},
	}
}

func frameworkListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "frameworks known to the running agent",
		Action: func(c *cli.Context) error {
			var out []map[string]any
			if err := newAPIClient(c).get(c, "/v1/frameworks", &out); err != nil {
				return err
			}
			return render(c, out, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tVERSION\tADHERED\tID")
				for _, f := range out {
					fmt.Fprintf(w, "%v\t%v\t%v\t%v\n", f["name"], f["version"], f["adhered"], f["id"])
				}
			})
		},
	}
}

func frameworkShowCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "a framework's canonical document",
		ArgsUsage: "ID|NAME",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return withCode(exitUsage, fmt.Errorf("show needs a framework id or name"))
			}
			var doc map[string]any
			if err := newAPIClient(c).get(c, "/v1/frameworks/"+url.PathEscape(c.Args().First()), &doc); err != nil {
				return err
			}
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(doc)
		},
	}
}
