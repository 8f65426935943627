package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-mesh/pcm/mesh"
	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/consensus"
)

// ledgerCommand inspects and verifies the ledger: online through the agent's
// API, or (verify, export) offline on --data-dir.
func ledgerCommand() *cli.Command {
	offline := &cli.BoolFlag{Name: "offline", Usage: "read <data-dir>/ledger directly (the agent must be stopped); automatic when the API is unreachable"}
	return &cli.Command{
		Name:  "ledger",
		Usage: "inspect and verify the replicated ledger",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list ledger entries",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "type", Usage: "only this type: framework, agreement, task_event, settlement, membership"},
					&cli.StringFlag{Name: "peer", Usage: "only entries involving this peer id"},
					&cli.StringFlag{Name: "task", Usage: "only entries of this task id"},
					&cli.Uint64Flag{Name: "from", Usage: "first index"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many entries"},
					&cli.BoolFlag{Name: "consistent", Usage: "read through the leader (sees every committed entry)"},
				},
				Action: ledgerList,
			},
			{
				Name:      "show",
				Usage:     "show one entry by index or id",
				ArgsUsage: "<index-or-id>",
				Action:    ledgerShow,
			},
			{
				Name:   "verify",
				Usage:  "recompute the hash chain and every signature; exit 1 naming the first bad index",
				Flags:  []cli.Flag{offline, &cli.BoolFlag{Name: "peers", Usage: "also compare this replica's chain with every other replica's and name the first index where one differs (a fork)"}},
				Action: ledgerVerify,
			},
			{
				Name:      "admit",
				Usage:     "as a voter, admit a peer to the ledger (it becomes a replica when it next joins) or revoke it",
				ArgsUsage: "<peer-id>",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "role", Value: "voter", Usage: "voter, nonvoter, or client (revokes the admission)"}},
				Action:    ledgerAdmit,
			},
			{Name: "refused", Usage: "list committed entries the ledger refused (forged, unauthorised, invalid)", Action: ledgerRefused},
			{
				Name:   "export",
				Usage:  "write every entry as JSON lines to stdout",
				Flags:  []cli.Flag{offline},
				Action: ledgerExport,
			},
			{Name: "balances", Usage: "show every peer's balance (micros)", Action: ledgerBalances},
			{Name: "members", Usage: "show the ledger's voters, non-voters and their progress", Action: ledgerMembers},
		},
	}
}

func ledgerList(c *cli.Context) error {
	q := url.Values{}
	for _, f := range []string{"type", "peer", "task"} {
		if v := c.String(f); v != "" {
			q.Set(f, v)
		}
	}
	if v := c.Uint64("from"); v > 0 {
		q.Set("from", strconv.FormatUint(v, 10))
	}
	q.Set("limit", strconv.Itoa(c.Int("limit")))
	if c.Bool("consistent") {
		q.Set("consistent", "1")
	}
	var recs []consensus.Record
	if err := newAPIClient(c).get(c, "/v1/ledger/entries?"+q.Encode(), &recs); err != nil {
		return err
	}
	return render(c, recs, func(w io.Writer) {
		fmt.Fprintln(w, "INDEX\tTYPE\tID\tSIGNERS\tTIME\tHASH")
		for _, r := range recs {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Index, r.Type, r.ID, signers(r), formatTime(r.Time), short(r.Hash, 12))
		}
	})
}

func ledgerShow(c *cli.Context) error {
	if c.NArg() != 1 {
		return withCode(exitUsage, fmt.Errorf("ledger show needs one argument: an entry index or id"))
	}
	var r consensus.Record
	if err := newAPIClient(c).get(c, "/v1/ledger/entries/"+url.PathEscape(c.Args().First()), &r); err != nil {
		return err
	}
	return render(c, r, func(w io.Writer) {
		fmt.Fprintf(w, "index:\t%d\n", r.Index)
		fmt.Fprintf(w, "type:\t%s\n", r.Type)
		fmt.Fprintf(w, "id:\t%s\n", r.ID)
		fmt.Fprintf(w, "time:\t%s\n", formatTime(r.Time))
		fmt.Fprintf(w, "signers:\t%s\n", signers(r))
		fmt.Fprintf(w, "prev hash:\t%s\n", r.PrevHash)
		fmt.Fprintf(w, "hash:\t%s\n", r.Hash)
		fmt.Fprintf(w, "payload:\t%s\n", r.Payload)
		if b := r.Billed; b != nil {
			fmt.Fprintf(w, "billed:\t%d micros from %s to %s (the ledger settled the attempt with this event)\n", b.Amount, b.Payer, b.Payee)
		}
	})
}

func ledgerVerify(c *cli.Context) error {
	if c.Bool("peers") {
		return ledgerVerifyPeers(c)
	}
	var rep consensus.VerifyReport
	var err error
	if c.Bool("offline") {
		rep, err = verifyOffline(c)
	} else if err = newAPIClient(c).get(c, "/v1/ledger/verify", &rep); exitCode(err) == exitUnavailable {
		fmt.Fprintf(c.App.ErrWriter, "%s\nverifying %s offline\n", oneLine(err), ledgerDir(c))
		rep, err = verifyOffline(c)
	}
	if err != nil {
		return err
	}
	if rerr := render(c, rep, func(w io.Writer) {
		if rep.OK {
			fmt.Fprintf(w, "ledger OK: %d entries, head %s\n", rep.Entries, rep.Head)
			return
		}
		fmt.Fprintf(w, "ledger BROKEN at index %d: %s\n(%d entries verified before it)\n", rep.FirstBad, rep.Reason, rep.Entries)
	}); rerr != nil {
		return rerr
	}
	if !rep.OK {
		return withCode(exitFailure, fmt.Errorf("ledger verification failed at index %d", rep.FirstBad))
	}
	return nil
}

func verifyOffline(c *cli.Context) (consensus.VerifyReport, error) {
	errw := c.App.ErrWriter
	if errw == nil {
		errw = os.Stderr
	}
	last, shown := time.Now(), false
	rep, err := consensus.VerifyDir(ledgerDir(c), mesh.Verifier{}, func(done, total uint64) {
		if time.Since(last) > 500*time.Millisecond {
			last, shown = time.Now(), true
			fmt.Fprintf(errw, "\rverified %d/%d entries", done, total)
		}
	})
	if shown {
		fmt.Fprintln(errw)
	}
	if err != nil {
		return rep, withCode(exitFailure, err)
	}
	return rep, nil
}

func ledgerExport(c *cli.Context) error {
	out := c.App.Writer
	if !c.Bool("offline") {
		resp, err := newAPIClient(c).raw(c.Context, http.MethodGet, "/v1/ledger/export", nil)
		if err == nil {
			defer resp.Body.Close()
			_, err = io.Copy(out, resp.Body)
			return err
		}
		if exitCode(err) != exitUnavailable {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "%s\nexporting %s offline\n", oneLine(err), ledgerDir(c))
	}
	if err := consensus.ExportDir(ledgerDir(c), out); err != nil {
		return withCode(exitFailure, err)
	}
	return nil
}

func ledgerBalances(c *cli.Context) error {
	var bal map[string]int64
	if err := newAPIClient(c).get(c, "/v1/ledger/balances", &bal); err != nil {
		return err
	}
	return render(c, bal, func(w io.Writer) {
		peers := make([]string, 0, len(bal))
		for p := range bal {
			peers = append(peers, p)
		}
		sort.Strings(peers)
		fmt.Fprintln(w, "PEER\tBALANCE (micros)\tBALANCE")
		for _, p := range peers {
			fmt.Fprintf(w, "%s\t%d\t%.6f\n", p, bal[p], float64(bal[p])/1e6)
		}
	})
}

func ledgerMembers(c *cli.Context) error {
	var m consensus.Membership
	if err := newAPIClient(c).get(c, "/v1/ledger/members", &m); err != nil {
		return err
	}
	return render(c, m, func(w io.Writer) {
		fmt.Fprintln(w, "PEER\tROLE\tLEADER\tINDEX\tHEAD\tERROR")
		for _, r := range m.Replicas {
			fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%s\t%s\n", r.ID, roleLabel(r.Role), r.ID == m.Leader, r.Index, short(r.Hash, 12), r.Error)
		}
		fmt.Fprintf(w, "\nadmission:\t%s\n", m.Policy.Admit)
		if m.Policy.Admit != consensus.AdmitOpen {
			fmt.Fprintf(w, "voters allowed:\t%s\n", orNone(m.Policy.Voters))
			fmt.Fprintf(w, "non-voters allowed:\t%s\n", orNone(m.Policy.NonVoters))
			var adm []string
			for p, r := range m.Policy.Admitted {
				adm = append(adm, fmt.Sprintf("%s (%s)", p, r))
			}
			sort.Strings(adm)
			fmt.Fprintf(w, "admitted by voters:\t%s\n", orNone(adm))
		}
	})
}

func ledgerDir(c *cli.Context) string { return filepath.Join(c.String("data-dir"), "ledger") }

func signers(r consensus.Record) string {
	var s []string
	for _, sig := range r.Signatures {
		s = append(s, short(sig.Signer, 12))
	}
	return strings.Join(s, ",")
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

// verifyAnswer mirrors agent.VerifyAnswer.
type verifyAnswer struct {
	consensus.VerifyReport
	Peers *consensus.ForkReport `json:"peers,omitempty"`
}

func ledgerVerifyPeers(c *cli.Context) error {
	var ans verifyAnswer
	if err := newAPIClient(c).get(c, "/v1/ledger/verify?peers=1", &ans); err != nil {
		return err
	}
	if err := render(c, ans, func(w io.Writer) {
		if ans.OK {
			fmt.Fprintf(w, "local chain OK: %d entries, head %s\n", ans.Entries, ans.Head)
		} else {
			fmt.Fprintf(w, "local chain BROKEN at index %d: %s\n", ans.FirstBad, ans.Reason)
		}
		fmt.Fprintln(w, "PEER\tHEAD\tCOMPARED UP TO\tRESULT")
		for _, p := range ans.Peers.Peers {
			res := "same chain"
			switch {
			case p.Error != "":
				res = "unreachable: " + p.Error
			case !p.Agree:
				res = fmt.Sprintf("FORK: chains differ from index %d on", p.DivergesAt)
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", p.Peer, p.Index, p.Compared, res)
		}
	}); err != nil {
		return err
	}
	if !ans.OK {
		return withCode(exitFailure, fmt.Errorf("ledger verification failed at index %d", ans.FirstBad))
	}
	if len(ans.Peers.Diverged) > 0 {
		return withCode(exitFailure, fmt.Errorf("this replica's chain differs from %d other replica(s): %s", len(ans.Peers.Diverged), strings.Join(ans.Peers.Diverged, ", ")))
	}
	return nil
}

func ledgerAdmit(c *cli.Context) error {
	if c.NArg() != 1 {
		return withCode(exitUsage, fmt.Errorf("ledger admit needs one argument: the peer id to admit"))
	}
	var rec consensus.Receipt
	req := map[string]string{"peer": c.Args().First(), "role": c.String("role")}
	if err := newAPIClient(c).do(c.Context, http.MethodPost, "/v1/ledger/admit", req, &rec); err != nil {
		return err
	}
	return render(c, rec, func(w io.Writer) {
		fmt.Fprintf(w, "admitted %s as %s (ledger index %d); it becomes a replica when it next joins\n", c.Args().First(), c.String("role"), rec.Index)
	})
}

func ledgerRefused(c *cli.Context) error {
	var recs []consensus.RefusedRecord
	if err := newAPIClient(c).get(c, "/v1/ledger/refused", &recs); err != nil {
		return err
	}
	return render(c, recs, func(w io.Writer) {
		fmt.Fprintln(w, "RAFT INDEX\tTYPE\tID\tSIGNERS\tREASON")
		for _, r := range recs {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", r.RaftIndex, r.Type, r.ID, strings.Join(r.Signers, ","), r.Reason)
		}
	})
}

// roleLabel spells roles as the docs and the testnet scripts do
// ("non-voter"); --output json keeps the wire value ("nonvoter").
func roleLabel[R ~string](r R) string {
	if string(r) == string(consensus.RoleNonVoter) {
		return "non-voter"
	}
	return string(r)
}
