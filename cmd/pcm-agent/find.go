package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
)

// meshCommand is `pcm-agent mesh find KEY`.
func meshCommand() *cli.Command {
	return &cli.Command{
		Name:  "mesh",
		Usage: "look at the mesh's DHT",
		Subcommands: []*cli.Command{{
			Name:      "find",
			Usage:     "who provides a DHT key: pcm:driver:<kind>, pcm:framework:<id>, pcm:gpu:<model>, pcm:results:<digest>",
			ArgsUsage: "KEY",
			Flags:     []cli.Flag{&cli.IntFlag{Name: "count", Value: 20, Usage: "stop after this many providers"}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return withCode(exitUsage, fmt.Errorf("mesh find needs one key, e.g. pcm:driver:slurm"))
				}
				q := url.Values{"key": {c.Args().First()}, "count": {fmt.Sprint(max(c.Int("count"), 1))}}
				ctx, cancel := context.WithTimeout(c.Context, 40*time.Second)
				defer cancel()
				var found []agent.FoundProvider
				if err := newAPIClient(c).do(ctx, "GET", "/v1/mesh/find?"+q.Encode(), nil, &found); err != nil {
					return err
				}
				return render(c, found, func(w io.Writer) {
					fmt.Fprintln(w, "PEER\tADDRS")
					for _, f := range found {
						fmt.Fprintf(w, "%s\t%s\n", f.Peer, strings.Join(f.Addrs, " "))
					}
				})
			},
		}},
	}
}
