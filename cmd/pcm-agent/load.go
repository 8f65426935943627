package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/urfave/cli/v2"
)

// loadTask is the default load: a sim-driver task of 1 CPU that runs one
// simulated second (testnet/up.sh --driver sim).
const loadTask = `name: load
resources:
  cpu: "1"
  memory: 256Mi
driver: sim
command: [simulated]
deadline: 30m
`

func loadCommand() *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "fire N concurrent task submissions at running agents and report placements/s and submit→placed latency",
		Description: `Submits --tasks copies of a task document (default: a 1-CPU sim task) to
the agents given by --target (HTTP API addresses, round robin), with at most
--concurrency submissions in flight, then waits until every task is placed
(an agreement committed) or ended. Latency is measured by the brokers'
own clocks: from a task's submitted_at to its first 'placed' transition.
A progress line is printed on stderr while it runs.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "target", Usage: "agent API address, e.g. http://127.0.0.1:8999 (repeatable; default the --api agent)"},
			&cli.IntFlag{Name: "tasks", Aliases: []string{"n"}, Value: 500, Usage: "tasks to submit"},
			&cli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Value: 500, Usage: "submissions in flight at once"},
			&cli.StringFlag{Name: "file", Usage: "task document to submit (default: a 1-CPU sim task)"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "give up waiting for placements after this long"},
		},
		Action: runLoad,
	}
}

type loadRun struct {
	targets []string
	token   string
	http    *http.Client
	doc     []byte
}

func runLoad(c *cli.Context) error {
	n, conc := c.Int("tasks"), c.Int("concurrency")
	if n < 1 || conc < 1 {
		return withCode(exitUsage, fmt.Errorf("--tasks and --concurrency must be at least 1"))
	}
	lr := &loadRun{targets: c.StringSlice("target"), token: c.String("api-token"), http: &http.Client{Timeout: time.Minute}, doc: []byte(loadTask)}
	if len(lr.targets) == 0 {
		t, err := resolveTarget(c)
		if err != nil {
			return err
		}
		lr.targets = []string{t.base}
	}
	for i, t := range lr.targets {
		lr.targets[i] = trimBase(t)
	}
	if f := c.String("file"); f != "" {
		doc, err := os.ReadFile(f)
		if err != nil {
			return withCode(exitUsage, err)
		}
		lr.doc = doc
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	errw := c.App.ErrWriter
	start := time.Now()
	ids, err := lr.submitAll(ctx, n, conc, errw)
	if err != nil {
		return err
	}
	submitted := time.Since(start)
	tasks, err := lr.waitPlaced(ctx, ids, errw)
	if err != nil {
		return err
	}
	fmt.Fprintln(errw)
	return render(c, summarize(tasks, submitted), func(w io.Writer) { printLoad(w, summarize(tasks, submitted)) })
}

// submitAll posts n documents, conc at a time; ids[i] is task i's id at
// target i mod len(targets).
func (lr *loadRun) submitAll(ctx context.Context, n, conc int, errw io.Writer) ([]string, error) {
	ids := make([]string, n)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var t agent.Task
			if err := lr.call(ctx, http.MethodPost, lr.targets[i%len(lr.targets)]+"/v1/tasks?name=load", lr.doc, &t); err != nil {
				once.Do(func() { firstErr = fmt.Errorf("submit %d: %w", i, err) })
				return
			}
			ids[i] = t.ID
			if d := done.Add(1); d%50 == 0 || int(d) == n {
				fmt.Fprintf(errw, "\rsubmitted %d/%d", d, n)
			}
		})
	}
	wg.Wait()
	return ids, firstErr
}

// waitPlaced asks each target every 250 ms for its tasks not yet placed
// (?state=queued,negotiating: the agents serialize only those) until none
// of ids is among them, then lists each target's tasks once and returns
// them as the brokers last reported.
func (lr *loadRun) waitPlaced(ctx context.Context, ids []string, errw io.Writer) ([]*agent.Task, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for {
		waiting := 0
		for _, tgt := range lr.targets {
			var list []*agent.Task
			if err := lr.call(ctx, http.MethodGet, tgt+"/v1/tasks?state=queued,negotiating", nil, &list); err != nil {
				return nil, fmt.Errorf("list unplaced tasks at %s: %w", tgt, err)
			}
			for _, t := range list {
				if want[t.ID] {
					waiting++
				}
			}
		}
		fmt.Fprintf(errw, "\rplaced or ended %d/%d   ", len(ids)-waiting, len(ids))
		if waiting == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d tasks not placed: %w", waiting, len(ids), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	var out []*agent.Task
	for _, tgt := range lr.targets {
		var list []*agent.Task
		if err := lr.call(ctx, http.MethodGet, tgt+"/v1/tasks", nil, &list); err != nil {
			return nil, fmt.Errorf("list tasks at %s: %w", tgt, err)
		}
		for _, t := range list {
			if want[t.ID] {
				out = append(out, t)
				delete(want, t.ID)
			}
		}
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("%d of %d submitted tasks are not listed by their agents", len(want), len(ids))
	}
	return out, nil
}

func (lr *loadRun) call(ctx context.Context, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if lr.token != "" {
		req.Header.Set("Authorization", "Bearer "+lr.token)
	}
	resp, err := lr.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// placedAt is when a task was first placed, or zero.
func placedAt(t *agent.Task) time.Time {
	for _, h := range t.History {
		if h.State == agent.StatePlaced {
			return h.Time
		}
	}
	return time.Time{}
}

// LoadSummary is what `pcm-agent load` reports.
type LoadSummary struct {
	Tasks         int     `json:"tasks"`
	Placed        int     `json:"placed"`
	Unplaced      int     `json:"unplaced"`
	SubmitSeconds float64 `json:"submit_seconds"`
	PlacementsPS  float64 `json:"placements_per_second"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
	RoundsPerTask float64 `json:"rounds_per_task"`
}

func summarize(tasks []*agent.Task, submitted time.Duration) LoadSummary {
	s := LoadSummary{Tasks: len(tasks), SubmitSeconds: submitted.Seconds()}
	var lat []time.Duration
	var first, last time.Time
	rounds := 0
	for _, t := range tasks {
		at := placedAt(t)
		if at.IsZero() {
			s.Unplaced++
			continue
		}
		s.Placed++
		lat = append(lat, at.Sub(t.SubmittedAt))
		if first.IsZero() || t.SubmittedAt.Before(first) {
			first = t.SubmittedAt
		}
		if at.After(last) {
			last = at
		}
		if len(t.Rounds) > 0 {
			rounds += t.Rounds[len(t.Rounds)-1].Last()
		}
	}
	if s.Placed == 0 {
		return s
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.P50ms, s.P99ms, s.MaxMs = ms(lat[len(lat)/2]), ms(lat[min(len(lat)-1, len(lat)*99/100)]), ms(lat[len(lat)-1])
	if span := last.Sub(first).Seconds(); span > 0 {
		s.PlacementsPS = float64(s.Placed) / span
	}
	s.RoundsPerTask = float64(rounds) / float64(s.Placed)
	return s
}

func printLoad(w io.Writer, s LoadSummary) {
	fmt.Fprintf(w, "tasks\t%d (placed %d, ended unplaced %d)\n", s.Tasks, s.Placed, s.Unplaced)
	fmt.Fprintf(w, "submitted in\t%.2f s\n", s.SubmitSeconds)
	fmt.Fprintf(w, "placements/s\t%.1f (first submission to last placement)\n", s.PlacementsPS)
	fmt.Fprintf(w, "submit→placed\tp50 %.1f ms, p99 %.1f ms, max %.1f ms\n", s.P50ms, s.P99ms, s.MaxMs)
	fmt.Fprintf(w, "rounds/task\t%.2f\n", s.RoundsPerTask)
}
