package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
)

// submitRemote submits over /pcm/submit/1.0.0 from a short-lived libp2p
// host that uses this machine's identity (the submitter the broker sees).
func submitRemote(c *cli.Context, addr, path string, doc []byte, wait bool) error {
	ai, err := mesh.ParseAddrInfo(addr)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--peer: %w", err))
	}
	id, err := mesh.LoadOrCreateIdentity(c.String("data-dir"))
	if err != nil {
		return err
	}
	// EnableRelay: the peer may be behind NAT, reachable at a
	// /p2p-circuit address only (NoListenAddrs alone leaves relaying off).
	h, err := libp2p.New(libp2p.Identity(id.PrivKey()), libp2p.NoListenAddrs, libp2p.EnableRelay(),
		libp2p.UserAgent(agent.UserAgent(version)))
	if err != nil {
		return fmt.Errorf("start a libp2p client: %w", err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		return withCode(exitUnavailable, fmt.Errorf("connect to %s: %w", addr, err))
	}
	var resp agent.TaskResponse
	if err := exchange(ctx, h, ai.ID, agent.SubmitProtocol, agent.SubmitRequest{V: 1, Name: filepath.Base(path), Document: doc}, &resp); err != nil {
		return err
	}
	if !resp.OK {
		return withCode(exitUsage, errors.New(resp.Error))
	}
	t := resp.Task
	if !wait {
		return render(c, t, func(w io.Writer) { fmt.Fprintf(w, "%s\t%s\n", t.ID, t.State) })
	}
	fmt.Fprintf(c.App.ErrWriter, "submitted %s (%s) to broker %s over the mesh\n", t.ID, t.Name, shortID(t.Broker))
	seen := 0
	for {
		var st agent.TaskResponse
		qctx, qcancel := context.WithTimeout(c.Context, 10*time.Second)
		err := exchange(qctx, h, ai.ID, agent.TaskProtocol, agent.TaskRequest{V: 1, Op: "status", TaskID: t.ID}, &st)
		qcancel()
		if err != nil {
			return err
		}
		if !st.OK {
			return errors.New(st.Error)
		}
		for ; seen < len(st.Task.History); seen++ {
			hh := st.Task.History[seen]
			fmt.Fprintf(c.App.ErrWriter, "%s  %-11s %s\n", hh.Time.Local().Format("15:04:05.000"), hh.State, hh.Note)
		}
		if finalTaskState(st.Task.State) {
			if st.Task.State != agent.StateSucceeded {
				return withCode(exitFailure, fmt.Errorf("task %s ended %s: %s", t.ID, st.Task.State, st.Task.Message))
			}
			return nil
		}
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// exchange sends one frame on a new stream and reads one frame back.
func exchange(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req, resp any) error {
	s, err := h.NewStream(mesh.AllowRelayed(ctx), p, proto)
	if err != nil {
		return withCode(exitUnavailable, fmt.Errorf("open %s: %w", proto, err))
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := mesh.WriteFrame(s, req, 256<<10); err != nil {
		return err
	}
	_ = s.CloseWrite()
	return mesh.ReadFrame(bufio.NewReader(s), resp, 256<<10)
}
