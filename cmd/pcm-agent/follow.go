package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// followLogs is `tasks logs -f`: a task that has no attempt yet (queued,
// negotiating, or not yet in this agent's view of the ledger) is waited
// for, up to --wait-placed, instead of failing, so that following a task
// right after submitting it works.
func followLogs(c *cli.Context, api *apiClient, id string) error {
	deadline := time.Now().Add(c.Duration("wait-placed"))
	told := false
	for {
		err := streamLogs(c, api, id, true)
		if err == nil || !notPlacedYet(err) || time.Now().After(deadline) {
			return err
		}
		if !told {
			fmt.Fprintf(c.App.ErrWriter, "(task %s is not placed yet: waiting up to %s)\n", id, c.Duration("wait-placed"))
			told = true
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notPlacedYet reports an answer meaning "no attempt to read logs from
// (yet)": HTTP 404 from the agent.
func notPlacedYet(err error) bool {
	var ee *exitError
	return errors.As(err, &ee) && strings.Contains(err.Error(), fmt.Sprintf("(HTTP %d)", http.StatusNotFound))
}
