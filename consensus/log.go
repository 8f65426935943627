package consensus

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hcLogger adapts slog to hclog.Logger, which hashicorp/raft requires.
// raft's Info logs go to slog at debug level except leadership and
// membership news, which stay at info; warnings and errors keep their level.
type hcLogger struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level
}

var _ hclog.Logger = (*hcLogger)(nil)

func newHCLogger(l *slog.Logger) hclog.Logger { return &hcLogger{l: l, level: hclog.Debug} }

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level < h.level {
		return
	}
	var sl slog.Level
	switch {
	case level >= hclog.Error:
		sl = slog.LevelError
	case level == hclog.Warn:
		sl = slog.LevelWarn
	case level == hclog.Info && importantRaftNews(msg):
		sl = slog.LevelInfo
	default:
		sl = slog.LevelDebug
	}
	all := append(append([]any{}, h.args...), args...)
	if h.name != "" {
		all = append(all, "logger", h.name)
	}
	h.l.Log(context.Background(), sl, msg, all...)
}

func importantRaftNews(msg string) bool {
	for _, s := range []string{"entering leader", "lost leadership", "updating configuration", "removed", "added peer"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hcLogger) IsTrace() bool                 { return h.level <= hclog.Trace }
func (h *hcLogger) IsDebug() bool                 { return h.level <= hclog.Debug }
func (h *hcLogger) IsInfo() bool                  { return h.level <= hclog.Info }
func (h *hcLogger) IsWarn() bool                  { return h.level <= hclog.Warn }
func (h *hcLogger) IsError() bool                 { return h.level <= hclog.Error }
func (h *hcLogger) ImpliedArgs() []any            { return h.args }
func (h *hcLogger) Name() string                  { return h.name }
func (h *hcLogger) SetLevel(level hclog.Level)    { h.level = level }
func (h *hcLogger) GetLevel() hclog.Level         { return h.level }

func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), args...)
	return &c
}

func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return slogWriter{h}
}

type slogWriter struct{ h *hcLogger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.h.Log(hclog.Info, strings.TrimSpace(string(p)))
	return len(p), nil
}
