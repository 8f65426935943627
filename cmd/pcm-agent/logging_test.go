package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// Normal events of a running mesh that raft and libp2p log as warnings or
// errors come out as INFO or DEBUG; real trouble keeps its level.
func TestLevelMap(t *testing.T) {
	var buf bytes.Buffer
	h := &levelMap{next: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), min: slog.LevelDebug}
	raft := slog.New(h).With("component", "raft")
	libp2p := slog.New(h.WithAttrs([]slog.Attr{slog.String("logger", "swarm2")}))
	for _, tc := range []struct {
		log  func()
		want string
	}{
		{func() {
			raft.Error("failed to decode incoming command", "error", errors.New("read: connection reset by peer"))
		}, "level=DEBUG msg=\"failed to decode incoming command\""},
		{func() { raft.Error("failed to decode incoming command", "error", errors.New("bad magic")) }, "level=ERROR"},
		{func() { raft.Warn("heartbeat timeout reached, starting election", "last-leader-id", "") }, "level=INFO"},
		{func() { raft.Warn("failed to get previous log", "previous-index", 7, "error", "log not found") }, "level=DEBUG"},
		{func() { raft.Warn("failed to contact quorum of nodes, stepping down") }, "level=WARN"},
		{func() {
			raft.Error("failed to appendEntries to", "error", "open /pcm/raft/1.0.0: protocols not supported")
		}, "level=DEBUG"},
		{func() { libp2p.Error("OnStart hook failed") }, "level=DEBUG"},
		{func() { libp2p.Error("dial backoff cleared") }, "level=WARN"},
		{func() { libp2p.Info("listening failed") }, "level=DEBUG"},
		{func() { slog.New(h).Error("ledger broken") }, "level=ERROR"},
	} {
		buf.Reset()
		tc.log()
		if !strings.Contains(buf.String(), tc.want) {
			t.Errorf("got %q, want %q", buf.String(), tc.want)
		}
	}
	// At level info, what was lowered to debug is dropped.
	buf.Reset()
	info := slog.New(&levelMap{next: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), min: slog.LevelInfo})
	info.Error("failed to decode incoming command", "error", "EOF")
	if buf.Len() != 0 {
		t.Errorf("at info: %q, want nothing", buf.String())
	}
}
