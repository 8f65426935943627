package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
)

// submitPlan is `submit --plan`: a dry run that queues nothing.
func submitPlan(c *cli.Context, api *apiClient, name string, doc []byte) error {
	var p agent.Plan
	if err := api.doRaw(c.Context, http.MethodPost, "/v1/tasks/plan?name="+name, bytes.NewReader(doc), &p); err != nil {
		return err
	}
	if err := render(c, p, func(w io.Writer) { planTable(w, &p) }); err != nil {
		return err
	}
	if !p.Fits() {
		return withCode(exitFailure, fmt.Errorf("none of the %d known providers could ever run %s", p.Providers, p.Task))
	}
	return nil
}

// requireFit is `submit --require-fit`: it refuses, before queueing, a
// task that no known provider could ever run.
func requireFit(c *cli.Context, api *apiClient, name string, doc []byte) error {
	var p agent.Plan
	if err := api.doRaw(c.Context, http.MethodPost, "/v1/tasks/plan?name="+name, bytes.NewReader(doc), &p); err != nil {
		return err
	}
	if p.Fits() {
		return nil
	}
	var why []string
	for _, pp := range p.Never {
		why = append(why, pp.Provider+": "+strings.Join(pp.Reasons, "; "))
	}
	return withCode(exitFailure, fmt.Errorf("not queued (--require-fit): none of the %d known providers could ever run %s: %s", p.Providers, p.Task, strings.Join(why, " | ")))
}

func planTable(w io.Writer, p *agent.Plan) {
	fmt.Fprintf(w, "task %s under %s; %d providers known\n", p.Task, p.Framework, p.Providers)
	for _, pp := range p.FitsNow {
		fmt.Fprintf(w, "  fits now\t%s\t%s/h\n", pp.Provider, money(pp.Quote))
	}
	for _, pp := range p.FitsLater {
		fmt.Fprintf(w, "  fits when free\t%s\t%s\n", pp.Provider, strings.Join(pp.Reasons, "; "))
	}
	for _, pp := range p.Never {
		fmt.Fprintf(w, "  never fits\t%s\t%s\n", pp.Provider, strings.Join(pp.Reasons, "; "))
	}
	switch {
	case len(p.FitsNow) > 0:
		fmt.Fprintf(w, "a submit would send calls for proposals to the first of the %d that fit now\n", len(p.FitsNow))
	case len(p.FitsLater) > 0:
		fmt.Fprintln(w, "a submit would queue the task until one of them has room")
	default:
		fmt.Fprintln(w, "no known provider could ever run it: a submit would queue it until its deadline in case one joins")
	}
}

func money(micros int64) string { return fmt.Sprintf("%.6f", float64(micros)/1e6) }

// warnIfNeverFits tells, after a submit, when no provider the broker
// knows could ever run the task (the task stays queued: one may join).
// A broker that cannot plan (an older agent) is not an error.
func warnIfNeverFits(c *cli.Context, api *apiClient, name string, doc []byte, t *agent.Task) {
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	var p agent.Plan
	if err := api.doRaw(ctx, http.MethodPost, "/v1/tasks/plan?name="+name, bytes.NewReader(doc), &p); err != nil || p.Fits() {
		return
	}
	fmt.Fprintf(c.App.ErrWriter, "warning: none of the %d providers %s knows could ever run %s:\n", p.Providers, shortID(t.Broker), t.ID)
	for _, pp := range p.Never {
		fmt.Fprintf(c.App.ErrWriter, "  %s: %s\n", pp.Provider, strings.Join(pp.Reasons, "; "))
	}
	fmt.Fprintf(c.App.ErrWriter, "it stays queued until %s in case one joins; `pcm-agent tasks cancel %s` drops it\n", t.Deadline.Local().Format(time.RFC3339), t.ID)
}
