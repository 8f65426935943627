package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// hoistGlobalFlags moves global flags written after the subcommand
// (`pcm-agent ledger verify --data-dir X`) in front of it, where
// urfave/cli looks for them. A flag the invoked command defines itself
// (join's --api-token) stays with it, moved before the command's
// arguments when written after them (`tasks results ID -o DIR`: urfave/cli
// stops reading flags at the first argument), and nothing after "--" moves.
func hoistGlobalFlags(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var hoisted, rest []string
	var cmdFlags []cli.Flag // flags of the command being parsed (nil: the app)
	cmds := app.Commands
	inCommand := false
	posAt := -1 // where in rest the current command's first argument is
	for i := 1; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			if cmd := findCommand(cmds, arg); cmd != nil && posAt < 0 {
				cmds, cmdFlags, inCommand = cmd.Subcommands, cmd.Flags, true
			} else if inCommand && posAt < 0 {
				posAt = len(rest)
			}
			rest = append(rest, arg)
			continue
		}
		name, hasValue := flagName(arg)
		own := findFlag(cmdFlags, name)
		global := findFlag(app.Flags, name)
		n := 1 // the flag, and its value when it takes one and has no "="
		if f := own; f != nil || global != nil {
			if f == nil {
				f = global
			}
			if !hasValue && takesValue(f) && i+1 < len(args) {
				n = 2
			}
		}
		if inCommand && own == nil && global != nil {
			hoisted = append(hoisted, args[i:i+n]...)
		} else if own != nil && posAt >= 0 {
			rest = append(rest[:posAt], append(slices.Clone(args[i:i+n]), rest[posAt:]...)...)
			posAt += n
		} else {
			rest = append(rest, args[i:i+n]...)
		}
		i += n - 1
	}
	out := append([]string{args[0]}, hoisted...)
	return append(out, rest...)
}

func flagName(arg string) (name string, hasValue bool) {
	name = strings.TrimLeft(arg, "-")
	name, _, hasValue = strings.Cut(name, "=")
	return name, hasValue
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}
