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
		// PCM_DATA_DIR and PCM_API are read here rather than as EnvVars so
		// that IsSet means "on the command line": a flag there beats both
		// variables (see resolveTarget).
		&cli.StringFlag{Name: "data-dir", Value: envOr("PCM_DATA_DIR", defaultDataDir()), Usage: "agent data directory (identity, ledger, task state); client commands talk to the agent running on it [$PCM_DATA_DIR]"},
		&cli.StringFlag{Name: "api", Value: envOr("PCM_API", defaultAPI), Usage: "API URL of the agent that client commands talk to [$PCM_API]"},
		&cli.StringFlag{Name: "api-token", EnvVars: []string{"PCM_API_TOKEN"}, Usage: "bearer token for the API (required by agents bound to non-loopback addresses)"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json or yaml"},
	}
}

// defaultAPI is where client commands look for an agent by default.
const defaultAPI = "http://127.0.0.1:8999"

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
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
