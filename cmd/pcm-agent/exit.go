package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// Exit codes scripts can rely on.
const (
	exitOK          = 0
	exitFailure     = 1 // generic failure, or a task that ended failed
	exitUsage       = 2 // bad flags, bad input documents
	exitUnavailable = 3 // the agent's API could not be reached
)

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ce cli.ExitCoder
	if errors.As(err, &ce) {
		return ce.ExitCode()
	}
	return exitFailure
}
