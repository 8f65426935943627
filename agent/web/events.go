package web

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// membersEvery is how many polls pass between membership reads when the
// ledger has not moved (a read may ask every replica over the mesh).
const membersEvery = 10

// maxStreamTasks caps the tasks an event carries (the newest first), so a
// long-lived mesh does not cost every open page megabytes per change.
const maxStreamTasks = 1000

// events is the page's server-sent event stream. Each poll reads the
// in-process API and sends, as one named event each, the parts that
// changed since the last poll: status, resources, peers, tasks, ledger
// (its head), members and metrics. An error reading a part is sent as a
// "problem" event so the page can show it.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("the response cannot stream events"))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	st := &stream{w: w, sent: map[string][32]byte{}}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.writeWindow()))
	st.write("retry: 2000\n\n")
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		s.poll(r, st, n)
		if st.err != nil {
			return
		}
		fl.Flush()
		// The next poll's events get a fresh write window (the server's
		// write timeout counts from the request's start).
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.writeWindow()))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// stream writes events and remembers a hash of the last data sent per
// event name.
type stream struct {
	w    http.ResponseWriter
	sent map[string][32]byte
	err  error
}

func (st *stream) write(s string) {
	if st.err == nil {
		_, st.err = st.w.Write([]byte(s))
	}
}

// send writes the event when its data differs from the last sent; it
// reports whether it wrote.
func (st *stream) send(name string, v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	h := sha256.Sum256(b)
	if prev, ok := st.sent[name]; ok && prev == h {
		return false
	}
	st.sent[name] = h
	st.write(fmt.Sprintf("event: %s\ndata: %s\n\n", name, b))
	return true
}

func (s *Server) poll(r *http.Request, st *stream, n int) {
	ctx := r.Context()
	var problems []string
	part := func(name, path string, v any) bool {
		if err := s.api(ctx, path, v); err != nil {
			problems = append(problems, err.Error())
			return false
		}
		return true
	}
	var status map[string]any
	if part("status", "/v1/status", &status) {
		delete(status, "uptime_s") // changes every poll
		st.send("status", status)
	}
	var resources, peers []json.RawMessage
	if part("resources", "/v1/resources", &resources) {
		st.send("resources", resources)
	}
	if part("peers", "/v1/peers", &peers) {
		st.send("peers", peers)
	}
	tasks, err := s.tasks.list(ctx)
	if err != nil {
		problems = append(problems, err.Error())
	}
	total := len(tasks)
	st.send("tasks", map[string]any{"tasks": tasks[:min(total, maxStreamTasks)], "total": total})
	moved := st.send("ledger", map[string]uint64{"head": s.tasks.head()})
	if moved || n%membersEvery == 0 {
		var members json.RawMessage
		if part("members", "/v1/ledger/members", &members) {
			st.send("members", members)
		}
	}
	if s.series.sample(time.Now()) || n == 0 {
		st.send("metrics", s.series.snapshot())
	}
	if problems == nil {
		problems = []string{}
	}
	st.send("problem", problems)
}

// writeWindow is Config.WriteWindow or its default.
func (s *Server) writeWindow() time.Duration {
	if s.cfg.WriteWindow > 0 {
		return s.cfg.WriteWindow
	}
	return time.Minute
}
