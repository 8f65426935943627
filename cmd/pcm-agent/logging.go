package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/gologshim"
)

// newLogger is the agent's logger: text on stderr at level, with the
// levels of raft's and libp2p's records mapped so that events a running
// mesh sees all the time are INFO or DEBUG, and ERROR means a person
// should look (see quieter). libp2p's loggers are routed through it too.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log_level %q: use debug, info, warn or error", level)
	}
	h := &levelMap{next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}), min: l}
	gologshim.SetDefaultHandler(h)
	return slog.New(h), nil
}

// quiet is one rule of quieter: a record whose message is msg
// and (when detail is set) whose message or error holds one of detail
// is logged at level at most.
type quiet struct {
	msg    string
	detail []string
	level  slog.Level
}

// gone are the errors of a connection to a peer that stopped, restarted
// or is not up yet.
var gone = []string{"reset", "EOF", "closed", "shutdown", "canceled", "deadline", "refused", "no addresses",
	"failed to dial", "protocols not supported", "failed to negotiate"}

// quieter lists the records that are normal in a running mesh although
// their library logs them as warnings or errors.
var quieter = []quiet{
	// raft, on every peer, when one agent stops or restarts: its
	// connections close under raft's transport, and RPCs to it fail
	// until it is back; "failed to contact" says so once per peer at INFO
	// (losing quorum stays a warning: "failed to contact quorum of
	// nodes, stepping down").
	{"failed to decode incoming command", gone, slog.LevelDebug},
	{"failed to appendEntries to", gone, slog.LevelDebug},
	{"failed to heartbeat to", gone, slog.LevelDebug},
	{"failed to make requestVote RPC", gone, slog.LevelDebug},
	{"failed to contact", nil, slog.LevelInfo}, // one peer; "failed to contact quorum of nodes, stepping down" stays a warning
	// raft, on every single-node start and on every election.
	{"heartbeat timeout reached, starting election", nil, slog.LevelInfo},
	// raft, on a joining agent until the leader adds it.
	{"no known peers, aborting election", nil, slog.LevelDebug},
	{"Election timeout reached, restarting election", nil, slog.LevelInfo},
	// raft, when a peer joins or lags: it is caught up from further back.
	{"failed to get previous log", []string{"log not found"}, slog.LevelDebug},
	{"appendEntries rejected, sending older logs", nil, slog.LevelDebug},
	// libp2p's fx, when the host cannot start (a taken port): join
	// returns the error itself, naming the address and the fix.
	{"OnStart hook failed", nil, slog.LevelDebug},
	{"start failed, rolling back", nil, slog.LevelDebug},
	{"start failed", nil, slog.LevelDebug},
}

// libp2pLevel lowers libp2p's records one step (ERROR to WARN, WARN to
// INFO, INFO to DEBUG): they are about the network and its peers, which
// come and go, and an agent that cannot work reports that itself.
func libp2pLevel(l slog.Level) slog.Level { return l - 4 }

// levelMap is a slog.Handler that lowers the level of the records listed
// in quieter, and of every record from libp2p, before passing them on.
type levelMap struct {
	next   slog.Handler
	min    slog.Level
	libp2p bool // the records carry gologshim's "logger" attribute
}

func (h *levelMap) Enabled(ctx context.Context, l slog.Level) bool {
	// Levels are only ever lowered: a record below min stays below.
	return h.next.Enabled(ctx, l)
}

func (h *levelMap) Handle(ctx context.Context, r slog.Record) error {
	l := h.level(r)
	if l < h.min {
		return nil
	}
	r.Level = l
	return h.next.Handle(ctx, r)
}

func (h *levelMap) level(r slog.Record) slog.Level {
	l := r.Level
	if h.libp2p {
		l = libp2pLevel(l)
	}
	for _, q := range quieter {
		if l <= q.level || r.Message != q.msg {
			continue
		}
		if len(q.detail) == 0 || holdsAny(r.Message, q.detail) || holdsAny(errorAttr(r), q.detail) {
			return q.level
		}
	}
	return l
}

func errorAttr(r slog.Record) string {
	var s string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" || a.Key == "err" {
			s = a.Value.String()
			return false
		}
		return true
	})
	return s
}

func holdsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (h *levelMap) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	for _, a := range attrs {
		if a.Key == "logger" {
			c.libp2p = true
		}
	}
	return &c
}

func (h *levelMap) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
