package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers/archive"
)

// resultsCommand is `pcm-agent tasks results ID [-o DIR]`.
func resultsCommand() *cli.Command {
	return &cli.Command{
		Name: "results", Usage: "fetch a task's results (from any agent that holds them), check their digest and unpack them", ArgsUsage: "ID",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "directory to unpack into (default ./<task id>)"},
			&cli.StringFlag{Name: "tar", Usage: "write the archive itself to this file instead of unpacking it"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return withCode(exitUsage, fmt.Errorf("results needs a task id"))
			}
			id := c.Args().First()
			api := newAPIClient(c)
			quiet, _ := jsonOutput(c)
			resp, err := fetchWithProgress(c, api, "/v1/tasks/"+id+"/results", quiet)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			digest := resp.Header.Get(agent.HeaderResultsDigest)
			if err := archive.CheckDigest(digest); err != nil {
				return fmt.Errorf("the agent sent no valid %s header: %w", agent.HeaderResultsDigest, err)
			}
			tmp, err := os.CreateTemp("", "pcm-results-*.tar")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			h := archive.NewHash()
			p := &progress{w: c.App.ErrWriter, total: resp.ContentLength, quiet: quiet}
			if _, err := io.Copy(io.MultiWriter(tmp, h, p), resp.Body); err != nil {
				return withCode(exitUnavailable, fmt.Errorf("download results of %s: %w", id, err))
			}
			p.done()
			if got := archive.Digest(h); got != digest {
				return fmt.Errorf("results of %s: received bytes hash to %s, not %s; fetch again", id, got, digest)
			}
			if dst := c.String("tar"); dst != "" {
				if err := os.Rename(tmp.Name(), dst); err != nil {
					return fmt.Errorf("--tar %s: %w", dst, err)
				}
				return renderFetched(c, id, digest, dst)
			}
			dir := c.String("out")
			if dir == "" {
				dir = filepath.Join(".", id)
			}
			if _, err := tmp.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if err := archive.Unpack(tmp, dir, 0); err != nil {
				return fmt.Errorf("-o %s: %w", dir, err)
			}
			return renderFetched(c, id, digest, dir)
		},
	}
}

// fetchWithProgress sends the GET and, while the agent fetches the
// archive over the mesh (before it answers), shows that fetch's progress
// from the agent's status.
func fetchWithProgress(c *cli.Context, api *apiClient, path string, quiet bool) (*http.Response, error) {
	type answer struct {
		resp *http.Response
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		resp, err := api.raw(c.Context, http.MethodGet, path, nil)
		ch <- answer{resp, err}
	}()
	shown := false
	for {
		select {
		case a := <-ch:
			if shown {
				fmt.Fprintln(c.App.ErrWriter)
			}
			return a.resp, a.err
		case <-time.After(500 * time.Millisecond):
		}
		var st agent.Status
		if quiet || api.get(c, "/v1/status", &st) != nil {
			continue
		}
		for _, t := range st.Results.Fetching {
			if t.Total > 0 {
				fmt.Fprintf(c.App.ErrWriter, "\rfetching over the mesh from %s: %d / %d MiB", shortID(t.Holder), t.Done>>20, t.Total>>20)
				shown = true
			}
		}
	}
}

func renderFetched(c *cli.Context, id, digest, where string) error {
	v := map[string]string{"task": id, "digest": digest, "path": where}
	return render(c, v, func(w io.Writer) { fmt.Fprintf(w, "%s\t%s\t%s\n", id, digest, where) })
}

// progress prints bytes received on the terminal, at most twice a second.
type progress struct {
	w     io.Writer
	total int64
	n     int64
	last  time.Time
	quiet bool
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if !p.quiet && p.total > 8<<20 && time.Since(p.last) > 500*time.Millisecond {
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r%d / %d MiB (%d%%)", p.n>>20, p.total>>20, 100*p.n/p.total)
	}
	return len(b), nil
}

func (p *progress) done() {
	if !p.quiet && !p.last.IsZero() {
		fmt.Fprintf(p.w, "\r%d / %d MiB (100%%)\n", p.n>>20, p.total>>20)
	}
}

// resultsTopCommand is `pcm-agent results put|list`.
func resultsTopCommand() *cli.Command {
	return &cli.Command{
		Name:  "results",
		Usage: "results archives this agent keeps; upload a directory as a task input",
		Subcommands: []*cli.Command{{
			Name:      "put",
			Usage:     "pack a directory into an archive kept by the agent; prints its digest, for inputs: [{digest: …}] of tasks submitted through this agent",
			ArgsUsage: "DIR",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return withCode(exitUsage, fmt.Errorf("results put needs one directory"))
				}
				dir := c.Args().First()
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					return withCode(exitUsage, fmt.Errorf("results put: %s is not a directory", dir))
				}
				tmp, err := os.CreateTemp("", "pcm-put-*.tar")
				if err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				defer tmp.Close()
				if _, err := archive.Collect(dir, []string{"*"}, 0, tmp); err != nil {
					return fmt.Errorf("pack %s: %w", dir, err)
				}
				if _, err := tmp.Seek(0, io.SeekStart); err != nil {
					return err
				}
				var m map[string]any
				if err := newAPIClient(c).doRaw(c.Context, http.MethodPost, "/v1/results", tmp, &m); err != nil {
					return err
				}
				return render(c, m, func(w io.Writer) { fmt.Fprintf(w, "%v\t%v bytes\n", m["digest"], m["size"]) })
			},
		}, {
			Name:  "list",
			Usage: "the archives this agent keeps (its tasks' outputs, copies it brokers or fetched, uploads)",
			Action: func(c *cli.Context) error {
				var ms []map[string]any
				if err := newAPIClient(c).get(c, "/v1/results", &ms); err != nil {
					return err
				}
				return render(c, ms, func(w io.Writer) {
					fmt.Fprintln(w, "DIGEST\tSIZE\tTASK\tOWNER")
					for _, m := range ms {
						fmt.Fprintf(w, "%v\t%v\t%v\t%v\n", m["digest"], m["size"], m["task_id"], m["owner"])
					}
				})
			},
		}},
	}
}
