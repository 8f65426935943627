package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/rules"
)

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a task document to an agent (its broker)",
		ArgsUsage: "FILE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "peer", Usage: "submit over the mesh to this agent's multiaddr (/.../p2p/<id>) instead of the local API"},
			&cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "show each state change and exit with the task's outcome (0 succeeded, 1 otherwise)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "stream the task's output once it runs (implies --wait)"},
			&cli.BoolFlag{Name: "require-fit", Usage: "do not queue the task when no known provider could ever run it (exit 1); by default it is queued with a warning, since such a provider may join"},
			&cli.BoolFlag{Name: "plan", Usage: "dry run: show which known providers could take the task now, later, or never (and the rule that rules each out); queue nothing. Exit 1 when none ever could"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return withCode(exitUsage, fmt.Errorf("submit needs one task file"))
			}
			path := c.Args().First()
			doc, err := os.ReadFile(path)
			if err != nil {
				return withCode(exitUsage, err)
			}
			wait := c.Bool("wait") || c.Bool("follow")
			if p := c.String("peer"); p != "" {
				if c.Bool("plan") || c.Bool("follow") || c.Bool("require-fit") {
					return withCode(exitUsage, fmt.Errorf("--plan, --require-fit and --follow work through the API only, not with --peer (use --wait)"))
				}
				return submitRemote(c, p, path, doc, wait)
			}
			api := newAPIClient(c)
			name := url.QueryEscape(filepath.Base(path))
			if c.Bool("plan") {
				return submitPlan(c, api, name, doc)
			}
			if c.Bool("require-fit") {
				if err := requireFit(c, api, name, doc); err != nil {
					return err
				}
			}
			var t agent.Task
			if err := api.doRaw(c.Context, http.MethodPost, "/v1/tasks?name="+name, bytes.NewReader(doc), &t); err != nil {
				return err
			}
			warnIfNeverFits(c, api, name, doc, &t)
			if !wait {
				return render(c, t, func(w io.Writer) { fmt.Fprintf(w, "%s\t%s\n", t.ID, t.State) })
			}
			fmt.Fprintf(c.App.ErrWriter, "submitted %s (%s) to broker %s\n", t.ID, t.Name, shortID(t.Broker))
			return waitTask(c, api, t.ID, c.Bool("follow"))
		},
	}
}

// waitTask prints every state change of a task until it ends.
func waitTask(c *cli.Context, api *apiClient, id string, follow bool) error {
	seen := 0
	followed := false
	for {
		var t agent.Task
		if err := api.get(c, "/v1/tasks/"+id, &t); err != nil {
			return err
		}
		for ; seen < len(t.History); seen++ {
			h := t.History[seen]
			fmt.Fprintf(c.App.ErrWriter, "%s  %-11s %s\n", h.Time.Local().Format("15:04:05.000"), h.State, h.Note)
		}
		if follow && !followed && (t.State == agent.StateRunning || finalTaskState(t.State)) {
			followed = true
			if err := streamLogs(c, api, id, true); err != nil {
				fmt.Fprintf(c.App.ErrWriter, "logs: %v\n", err)
			}
			continue
		}
		if finalTaskState(t.State) {
			if asJSON, _ := jsonOutput(c); asJSON {
				_ = render(c, t, nil)
			}
			if t.State != agent.StateSucceeded {
				return withCode(exitFailure, fmt.Errorf("task %s ended %s: %s", id, t.State, t.Message))
			}
			return nil
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(150 * time.Millisecond):
		}
	}
}

func finalTaskState(s string) bool {
	switch s {
	case agent.StateSucceeded, agent.StateFailed, agent.StateCancelled, agent.StateExpired:
		return true
	}
	return false
}

func shortID(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-8:]
	}
	return id
}

func streamLogs(c *cli.Context, api *apiClient, id string, follow bool) error {
	q := "/v1/tasks/" + id + "/logs"
	if follow {
		q += "?follow=1"
	}
	resp, err := api.raw(c.Context, http.MethodGet, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(c.App.Writer, resp.Body)
	return err
}

func tasksCommand() *cli.Command {
	idArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", withCode(exitUsage, fmt.Errorf("%s needs a task id", c.Command.Name))
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		Name:  "tasks",
		Usage: "list, inspect, follow and cancel tasks",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "tasks brokered by this agent",
				Action: func(c *cli.Context) error {
					var ts []agent.Task
					if err := newAPIClient(c).get(c, "/v1/tasks", &ts); err != nil {
						return err
					}
					return render(c, ts, func(w io.Writer) {
						fmt.Fprintln(w, "ID\tNAME\tSTATE\tATTEMPT\tPROVIDER\tSUBMITTED\tMESSAGE")
						for _, t := range ts {
							fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.ID, t.Name, t.State, t.Attempt, shortID(t.Provider), t.SubmittedAt.Local().Format("15:04:05"), t.Message)
						}
					})
				},
			},
			{
				Name: "status", Usage: "one task's state and history", ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id, err := idArg(c)
					if err != nil {
						return err
					}
					var t agent.Task
					if err := newAPIClient(c).get(c, "/v1/tasks/"+id, &t); err != nil {
						return err
					}
					return render(c, t, func(w io.Writer) { taskTable(w, &t) })
				},
			},
			{
				Name: "logs", Usage: "a task's output, from wherever it runs", ArgsUsage: "ID",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep streaming until the task ends; waits (up to --wait-placed) for a task that is not placed yet"}, &cli.DurationFlag{Name: "wait-placed", Value: time.Minute, Usage: "with --follow: how long to wait for the task to be placed"}},
				Action: func(c *cli.Context) error {
					id, err := idArg(c)
					if err != nil {
						return err
					}
					api := newAPIClient(c)
					if c.Bool("follow") {
						return followLogs(c, api, id)
					}
					return streamLogs(c, api, id, false)
				},
			},
			{
				Name: "cancel", Usage: "cancel a task (at its broker or provider)", ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id, err := idArg(c)
					if err != nil {
						return err
					}
					ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
					defer cancel()
					if err := newAPIClient(c).do(ctx, http.MethodPost, "/v1/tasks/"+id+"/cancel", nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "cancel of %s sent\n", id)
					return nil
				},
			},
			resultsCommand(),
			{
				Name: "explain", Usage: "why a task is (not) placed: every negotiation round", ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id, err := idArg(c)
					if err != nil {
						return err
					}
					var t agent.Task
					if err := newAPIClient(c).get(c, "/v1/tasks/"+id, &t); err != nil {
						return err
					}
					return render(c, t.Rounds, func(w io.Writer) { explainTable(w, &t) })
				},
			},
		},
	}
}

func taskTable(w io.Writer, t *agent.Task) {
	fmt.Fprintf(w, "id\t%s\nname\t%s\nstate\t%s\t%s\n", t.ID, t.Name, t.State, t.Message)
	fmt.Fprintf(w, "framework\t%s\nbroker\t%s\nprovider\t%s\nagreement\t%s\n", frameworkLabel(t.Framework), t.Broker, t.Provider, t.AgreementID)
	fmt.Fprintf(w, "attempt\t%d (retries left %d)\ndeadline\t%s\n", t.Attempt, t.RetriesLeft, t.Deadline.Local().Format(time.RFC3339))
	if finalTaskState(t.State) {
		fmt.Fprintf(w, "exit code\t%d\nusage\t%.2f cpu-s, %.2f s wall\nsettled\t%d micros\n", t.ExitCode, t.Usage.CPUSeconds, t.Usage.WallSeconds, t.Settled)
	}
	if t.Results != nil {
		fmt.Fprintf(w, "results\t%s (%d bytes; pcm-agent tasks results %s)\n", t.Results.Digest, t.Results.Size, t.ID)
	}
	for _, h := range t.History {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", h.Time.Local().Format("15:04:05.000"), h.State, h.Note)
	}
}

// frameworkLabel names the built-in framework instead of showing its id.
func frameworkLabel(id string) string {
	if def := rules.DefaultFramework(); id == def.ID() {
		return fmt.Sprintf("%s (built in, %s)", rules.DefaultName, id)
	}
	return id
}
