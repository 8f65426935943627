// Command pcm-agent runs a pcm agent (join) and talks to a running one.
//
// Which agent a client command talks to is decided once per command
// (target.go): --api; else the agent running on --data-dir, found through
// <data-dir>/api.json and checked by peer id; else the default API. Global
// flags may follow the subcommand (args.go moves them in front, where
// urfave/cli reads them). The logger maps raft's and libp2p's levels so
// that normal mesh events are INFO or DEBUG (logging.go).
//
// This is the only package that reads flags and the environment and may
// call os.Exit; exit codes are in exit.go.
package main
