// Command pcm-agent runs a pcm agent (join) and talks to a running one.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	app := newApp()
	if err := app.Run(hoistGlobalFlags(app, os.Args)); err != nil {
		// One line, so scripts can show it as the reason.
		fmt.Fprintf(os.Stderr, "pcm-agent: %s\n", oneLine(err))
		os.Exit(exitCode(err))
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:                 "pcm-agent",
		Usage:                "a peer-to-peer cooperation mesh for compute providers",
		Version:              version,
		EnableBashCompletion: true,
		Flags:                globalFlags(),
		Commands:             commands(),
		ExitErrHandler:       func(*cli.Context, error) {},
	}
}

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "data-dir", Value: defaultDataDir(), EnvVars: []string{"PCM_DATA_DIR"}, Usage: "agent data directory (identity, ledger, task state)"},
		&cli.StringFlag{Name: "api", Value: "http://127.0.0.1:8999", EnvVars: []string{"PCM_API"}, Usage: "API URL of the agent that client commands talk to"},
		&cli.StringFlag{Name: "api-token", EnvVars: []string{"PCM_API_TOKEN"}, Usage: "bearer token for the API (required by agents bound to non-loopback addresses)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json or yaml"},
	}
}

func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".pcm"
	}
	return home + "/.pcm"
}

// oneLine flattens an error to one line, so scripts can show it as the
// reason.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
