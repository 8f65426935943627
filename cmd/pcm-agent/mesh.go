package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
)

func idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "show this agent's peer id (and addresses when it is running)",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "init", Usage: "create the identity in --data-dir when it has none (e.g. to know a peer id before the first join)"}},
		Action: func(c *cli.Context) error {
			if !dataDirSet(c) && !c.Bool("init") {
				// No data dir named: the agent on --api, else ~/.pcm offline.
				var st agent.Status
				if err := newAPIClient(c).get(c, "/v1/status", &st); err == nil {
					return renderID(c, st.PeerID, st.Addrs)
				}
			}
			dir := c.String("data-dir")
			if _, err := os.Stat(filepath.Join(dir, mesh.KeyFile)); err != nil && !c.Bool("init") {
				return withCode(exitUnavailable, fmt.Errorf("no agent answers at %s and %s holds no identity; start one with `pcm-agent join`, or create the identity with `pcm-agent --data-dir %s id --init`", c.String("api"), dir, dir))
			}
			id, err := mesh.LoadOrCreateIdentity(dir)
			if err != nil {
				return err
			}
			// The data dir's own identity; addresses when its agent runs.
			var st agent.Status
			if err := newAPIClient(c).get(c, "/v1/status", &st); err == nil && st.PeerID == id.ID() {
				return renderID(c, st.PeerID, st.Addrs)
			}
			fmt.Fprintf(c.App.ErrWriter, "(no running agent owns %s: identity read offline)\n", dir)
			return renderID(c, id.ID(), nil)
		},
	}
}

func renderID(c *cli.Context, id string, addrs []string) error {
	v := map[string]any{"peer_id": id}
	if addrs != nil {
		v["addrs"] = addrs
	}
	return render(c, v, func(w io.Writer) {
		fmt.Fprintln(w, id)
		for _, a := range addrs {
			fmt.Fprintln(w, a)
		}
	})
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the running agent's status",
		Action: func(c *cli.Context) error {
			var st agent.Status
			if err := newAPIClient(c).get(c, "/v1/status", &st); err != nil {
				return err
			}
			return render(c, st, func(w io.Writer) {
				fmt.Fprintf(w, "peer id\t%s\n", st.PeerID)
				fmt.Fprintf(w, "version\t%s\n", st.Version)
				fmt.Fprintf(w, "uptime\t%s\n", (time.Duration(st.UptimeSeconds) * time.Second).String())
				fmt.Fprintf(w, "peers\t%d\n", st.Peers)
				fmt.Fprintf(w, "providers\t%d\n", st.Providers)
				fmt.Fprintf(w, "drivers\t%s\n", strings.Join(st.Drivers, ", "))
				fmt.Fprintf(w, "adverts accepted\t%d\n", st.Validator.Accepted)
				fmt.Fprintf(w, "adverts rejected\t%s\n", countsByReason(st.Validator.Rejected))
				fmt.Fprintf(w, "reachability\t%s\n", st.NAT.Reachability)
				fmt.Fprintf(w, "relay service\t%v\n", st.NAT.RelayService)
				for _, r := range st.NAT.Relays {
					fmt.Fprintf(w, "relay reservation\t%s\n", r)
				}
				for _, a := range st.NAT.ObservedAddrs {
					fmt.Fprintf(w, "observed addr\t%s\n", a)
				}
				for _, a := range st.Addrs {
					fmt.Fprintf(w, "addr\t%s\n", a)
				}
				fmt.Fprintf(w, "dht routing table\t%d peers\n", st.DHT.RoutingTable)
				for _, k := range st.DHT.Provided {
					last := "never"
					if !k.LastProvided.IsZero() {
						last = k.LastProvided.Local().Format(time.RFC3339)
					}
					fmt.Fprintf(w, "dht provides\t%s\t%d times, last %s\t%s\n", k.Key, k.Provides, last, k.LastError)
				}
				fmt.Fprintf(w, "results held\t%d (%d MiB)\n", st.Results.Held, st.Results.Bytes>>20)
			})
		},
	}
}

func peersCommand() *cli.Command {
	return &cli.Command{
		Name:  "peers",
		Usage: "list the peers the running agent is connected to",
		Action: func(c *cli.Context) error {
			var peers []mesh.PeerInfo
			if err := newAPIClient(c).get(c, "/v1/peers", &peers); err != nil {
				return err
			}
			sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
			return render(c, peers, func(w io.Writer) {
				fmt.Fprintln(w, "PEER\tPROVIDER\tVIA\tSINCE\tDIRECTION\tLATENCY\tADDRESS")
				now := time.Now()
				for _, p := range peers {
					for _, cn := range p.Conns {
						via := "direct"
						if cn.Relayed {
							via = "relayed"
						}
						if !cn.Relayed && p.RelayedAt != nil && p.DirectAt != nil {
							via = fmt.Sprintf("direct (%s after relay)", p.DirectAt.Sub(*p.RelayedAt).Round(time.Millisecond))
						}
						since := fmt.Sprintf("%s (%s ago)", cn.Since.Local().Format(time.TimeOnly), now.Sub(cn.Since).Round(time.Second))
						fmt.Fprintf(w, "%s\t%v\t%s\t%s\t%s\t%.2fms\t%s\n", p.ID, p.Provider, via, since, cn.Direction, p.LatencyMS, cn.Addr)
					}
				}
			})
		},
	}
}

func resourcesCommand() *cli.Command {
	return &cli.Command{
		Name:  "resources",
		Usage: "list providers and their capacity from the running agent's resource table",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "attr", Usage: "filter KEY=VALUE on provider attributes (repeatable), e.g. region=cn-north"},
			&cli.StringFlag{Name: "driver", Usage: "only providers with this driver"},
		},
		Action: func(c *cli.Context) error {
			q := url.Values{}
			for _, a := range c.StringSlice("attr") {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return withCode(exitUsage, fmt.Errorf("--attr %q: want KEY=VALUE", a))
				}
				q.Set(k, v)
			}
			if d := c.String("driver"); d != "" {
				q.Set("driver", d)
			}
			var entries []mesh.Entry
			if err := newAPIClient(c).get(c, "/v1/resources?"+q.Encode(), &entries); err != nil {
				return err
			}
			return render(c, entries, func(w io.Writer) { resourcesTable(w, entries) })
		},
	}
}

func resourcesTable(w io.Writer, entries []mesh.Entry) {
	fmt.Fprintln(w, "PROVIDER\tDRIVERS\tCPU FREE/TOTAL\tMEMORY FREE/TOTAL\tGPU\tATTRIBUTES\tEXPIRES")
	for _, e := range entries {
		a := e.Advert
		var ds []string
		for _, d := range a.Drivers {
			ds = append(ds, d.Name)
		}
		var attrs []string
		for k, v := range a.Attrs {
			attrs = append(attrs, k+"="+v)
		}
		sort.Strings(attrs)
		fmt.Fprintf(w, "%s\t%s\t%g/%g\t%s/%s\t%g\t%s\t%s\n", a.Provider, strings.Join(ds, ","),
			a.Free["cpu"], a.Total["cpu"], mib(a.Free["memory"]), mib(a.Total["memory"]), a.Total["gpu"],
			strings.Join(attrs, ","), time.Until(e.Expires).Round(time.Second))
	}
}

func mib(v float64) string {
	if v >= 1024 {
		return fmt.Sprintf("%.1fGiB", v/1024)
	}
	return fmt.Sprintf("%gMiB", v)
}

// countsByReason prints {"stale": 2, "forged": 1} as "3 (forged 1, stale 2)"
// and an empty map as "0".
func countsByReason(m map[string]uint64) string {
	var total uint64
	reasons := make([]string, 0, len(m))
	for k, v := range m {
		total += v
		reasons = append(reasons, k)
	}
	if total == 0 {
		return "0"
	}
	sort.Strings(reasons)
	parts := make([]string, 0, len(reasons))
	for _, k := range reasons {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}
