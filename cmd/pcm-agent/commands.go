package main

import (
	"fmt"
	"io"

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
		frameworkCommand(),
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
		Subcommands: []*cli.Command{frameworkValidateCommand()},
	}
}

func taskCommand() *cli.Command {
	return &cli.Command{
		Name:        "task",
		Usage:       "task documents: validate offline",
		Subcommands: []*cli.Command{taskValidateCommand()},
	}
}
