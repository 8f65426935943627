package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pcm-mesh/pcm/agent/tasks"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/mesh"
)

// TaskRequest is a request on /pcm/task/1.0.0; the requester is the
// stream's authenticated remote peer.
type TaskRequest struct {
	V      int    `json:"v"`
	Op     string `json:"op"` // ping | status | logs | cancel
	TaskID string `json:"task_id"`
	Offset int64  `json:"offset,omitempty"`
	Follow bool   `json:"follow,omitempty"`
	// Agreements are the attempts a provider renews (op renew).
	Agreements []string `json:"agreements,omitempty"`
}

// TaskResponse answers a TaskRequest; for logs, raw output follows it.
type TaskResponse struct {
	V     int    `json:"v"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Task  *Task  `json:"task,omitempty"`
	// Current answers renew: the attempts whose leases were renewed; the
	// others no longer count and their provider stops them.
	Current []string `json:"current,omitempty"`
}

// SubmitRequest is a task submission on /pcm/submit/1.0.0.
type SubmitRequest struct {
	V        int    `json:"v"`
	Name     string `json:"name"`
	Document []byte `json:"document"`
}

func (a *Agent) handleTaskStream(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(30 * time.Second))
	var req TaskRequest
	if err := readStreamRequest(bufio.NewReader(s), &req); err != nil {
		if errors.Is(err, errFraming) {
			_ = s.Reset()
			return
		}
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, Error: err.Error()}, maxFrame)
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	by := s.Conn().RemotePeer().String()
	ctx, cancel := context.WithCancel(a.runCtx)
	defer cancel()
	switch req.Op {
	case "ping":
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, OK: true}, maxFrame)
	case "renew":
		if len(req.Agreements) > 4096 {
			_ = mesh.WriteFrame(s, TaskResponse{V: 1, Error: "renew: at most 4096 agreements per request"}, maxFrame)
			return
		}
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, OK: true, Current: a.broker.Renew(by, req.Agreements)}, maxFrame)
	case "status":
		t, ok := a.broker.Get(req.TaskID)
		if !ok {
			_ = mesh.WriteFrame(s, TaskResponse{V: 1, Error: tasks.ErrNotFound.Error()}, maxFrame)
			return
		}
		if err := a.authorizeBrokered(ctx, t, opQuery, by); err != nil {
			_ = mesh.WriteFrame(s, errResponse(err), maxFrame)
			return
		}
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, OK: true, Task: t}, maxFrame)
	case "cancel":
		err := a.cancelFor(ctx, req.TaskID, by)
		_ = mesh.WriteFrame(s, errResponse(err), maxFrame)
	case "logs":
		rc, err := a.localLogs(ctx, req.TaskID, req.Offset, req.Follow, by)
		_ = mesh.WriteFrame(s, errResponse(err), maxFrame)
		if err == nil {
			defer rc.Close()
			_, _ = io.Copy(s, rc)
		}
	default:
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, Error: fmt.Sprintf("op %q is unknown; use ping, status, logs or cancel", req.Op)}, maxFrame)
	}
}

func errResponse(err error) TaskResponse {
	if err != nil {
		return TaskResponse{V: 1, Error: err.Error()}
	}
	return TaskResponse{V: 1, OK: true}
}

// askPeer sends a TaskRequest and returns the response and the stream.
func (a *Agent) askPeer(ctx context.Context, peerID string, req TaskRequest) (TaskResponse, network.Stream, error) {
	s, err := a.node.NewStream(ctx, peerID, TaskProtocol)
	if err != nil {
		return TaskResponse{}, nil, err
	}
	if err := mesh.WriteFrame(s, req, maxFrame); err != nil {
		s.Reset()
		return TaskResponse{}, nil, err
	}
	_ = s.CloseWrite()
	var resp TaskResponse
	r := bufio.NewReader(s)
	if err := mesh.ReadFrame(r, &resp, maxFrame); err != nil {
		s.Reset()
		return TaskResponse{}, nil, err
	}
	if !resp.OK {
		s.Close()
		if strings.HasPrefix(resp.Error, errForbidden.Error()) {
			return resp, nil, fmt.Errorf("%w (answer of %s)", errForbiddenRemote{resp.Error}, peerID)
		}
		return resp, nil, errors.New(resp.Error)
	}
	return resp, &bufferedStream{Stream: s, r: r}, nil
}

// errForbiddenRemote is a peer's "not entitled" answer.
type errForbiddenRemote struct{ msg string }

func (e errForbiddenRemote) Error() string { return e.msg }
func (e errForbiddenRemote) Unwrap() error { return errForbidden }

type bufferedStream struct {
	network.Stream
	r *bufio.Reader
}

func (b *bufferedStream) Read(p []byte) (int, error) { return b.r.Read(p) }

// TaskStatus finds a task: brokered here, or asked of its broker (known
// from the ledger once the task was placed).
func (a *Agent) TaskStatus(ctx context.Context, id string) (*Task, error) {
	if t, ok := a.broker.Get(id); ok {
		return t, nil
	}
	ag, ok := a.latestAgreement(ctx, id)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not brokered here and has no agreement in the ledger (ask the agent it was submitted to)", tasks.ErrNotFound, id)
	}
	resp, s, err := a.askPeer(ctx, ag.Broker, TaskRequest{V: 1, Op: "status", TaskID: id})
	if err != nil {
		return nil, fmt.Errorf("ask broker %s: %w", ag.Broker, err)
	}
	s.Close()
	return resp.Task, nil
}

// CancelTask cancels a task on behalf of this agent (its local API): before
// placement at its broker, afterwards at its provider. The broker and the
// provider each check that this agent is entitled (the task's submitter,
// broker or provider).
func (a *Agent) CancelTask(ctx context.Context, id, _ string) error {
	return a.cancelFor(ctx, id, a.ID())
}

// cancelFor cancels a task for peer by, an authenticated peer id.
func (a *Agent) cancelFor(ctx context.Context, id, by string) error {
	if t, ok := a.broker.Get(id); ok {
		if err := a.authorizeBrokered(ctx, t, opCancel, by); err != nil {
			return err
		}
		placed, err := a.broker.CancelLocal(id, by)
		if err != nil || !placed {
			return err
		}
	}
	ag, ok := a.latestAgreement(ctx, id)
	if !ok {
		return fmt.Errorf("%w: %s", tasks.ErrNotFound, id)
	}
	if by != a.ID() && ag.Broker != a.ID() && ag.Provider != a.ID() {
		// Forwarding would act with this agent's identity for another
		// peer (a confused deputy): send the cancel to the task's broker
		// or provider.
		return fmt.Errorf("%w: this agent is neither the broker (%s) nor the provider (%s) of task %s; send the cancel to one of them", errForbidden, ag.Broker, ag.Provider, id)
	}
	if ag.Provider == a.ID() {
		if err := a.authorizeTask(ag, "", opCancel, by); err != nil {
			return err
		}
		if !a.provider.Cancel(id, by) {
			return fmt.Errorf("task %s is not running here (already ended?)", id)
		}
		a.log.Info("task cancelled", "task", id, "by", by)
		return nil
	}
	_, s, err := a.askPeer(ctx, ag.Provider, TaskRequest{V: 1, Op: "cancel", TaskID: id})
	if err != nil {
		return fmt.Errorf("cancel at provider %s: %w", ag.Provider, err)
	}
	s.Close()
	return nil
}

// localLogs reads a task's output from this provider's driver for peer by.
func (a *Agent) localLogs(ctx context.Context, id string, offset int64, follow bool, by string) (io.ReadCloser, error) {
	ag, ok := a.latestAgreement(ctx, id)
	if !ok || ag.Provider != a.ID() {
		return nil, fmt.Errorf("%w: task %s has no attempt on this provider", tasks.ErrNotFound, id)
	}
	if err := a.authorizeTask(ag, "", opLogs, by); err != nil {
		return nil, err
	}
	d, ok := a.drivers[ag.Driver]
	if !ok {
		return nil, fmt.Errorf("driver %q is not enabled here", ag.Driver)
	}
	return d.Logs(ctx, ag.ID, drivers.LogOptions{Offset: offset, Follow: follow})
}

// TaskLogs streams a task's output from wherever it runs.
func (a *Agent) TaskLogs(ctx context.Context, id string, offset int64, follow bool) (io.ReadCloser, error) {
	ag, ok := a.latestAgreement(ctx, id)
	if !ok {
		return nil, fmt.Errorf("%w: %s has not been placed (no agreement in the ledger yet)", tasks.ErrNotFound, id)
	}
	if ag.Provider == a.ID() {
		return a.localLogs(ctx, id, offset, follow, a.ID())
	}
	_, s, err := a.askPeer(ctx, ag.Provider, TaskRequest{V: 1, Op: "logs", TaskID: id, Offset: offset, Follow: follow})
	if err != nil {
		return nil, fmt.Errorf("logs from provider %s: %w", ag.Provider, err)
	}
	return s, nil
}

func (a *Agent) handleSubmitStream(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	var req SubmitRequest
	if err := readStreamRequest(bufio.NewReader(s), &req); err != nil {
		if errors.Is(err, errFraming) {
			_ = s.Reset()
			return
		}
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, Error: err.Error()}, maxFrame)
		return
	}
	t, err := a.broker.Submit(req.Document, orDefault(req.Name, "submission"), s.Conn().RemotePeer().String())
	if err != nil {
		_ = mesh.WriteFrame(s, TaskResponse{V: 1, Error: err.Error()}, maxFrame)
		return
	}
	_ = mesh.WriteFrame(s, TaskResponse{V: 1, OK: true, Task: t}, maxFrame)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Submit queues a task document with this agent as broker.
func (a *Agent) Submit(doc []byte, name string) (*Task, error) {
	return a.broker.Submit(doc, name, a.ID())
}

// Tasks lists the tasks this agent brokers.
func (a *Agent) Tasks() []*Task { return a.broker.List() }

// WatchTasks calls fn on every change of a task brokered here.
func (a *Agent) WatchTasks(fn func(*Task)) (stop func()) { return a.broker.Watch(fn) }

func (a *Agent) taskRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		doc, err := io.ReadAll(io.LimitReader(r.Body, maxFrame+1))
		if err != nil || len(doc) > maxFrame {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("task document over %d bytes", maxFrame))
			return
		}
		t, err := a.Submit(doc, orDefault(r.URL.Query().Get("name"), "task"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusCreated, t)
	})
	mux.HandleFunc("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		want, err := statesFilter(r.URL.Query().Get("state"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		all := a.Tasks()
		if want == nil {
			writeJSON(w, http.StatusOK, all)
			return
		}
		out := make([]*Task, 0, len(all))
		for _, t := range all {
			if want[t.State] {
				out = append(out, t)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, err := a.TaskStatus(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, statusFor(err), err)
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("GET /v1/tasks/{id}/results", a.handleResults)
	mux.HandleFunc("POST /v1/results", a.handlePut)
	mux.HandleFunc("GET /v1/results", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.HeldResults()) })
	mux.HandleFunc("POST /v1/tasks/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if err := a.CancelTask(r.Context(), r.PathValue("id"), a.ID()); err != nil {
			writeError(w, statusFor(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "cancelling"})
	})
	mux.HandleFunc("GET /v1/tasks/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		offset, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
		follow := r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"
		rc, err := a.TaskLogs(r.Context(), r.PathValue("id"), offset, follow)
		if err != nil {
			writeError(w, statusFor(err), err)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fl, _ := w.(http.Flusher)
		rc2 := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			if n > 0 {
				// Each chunk gets a fresh write window: a follow lasts as
				// long as its task, a client that stops reading is cut.
				_ = rc2.SetWriteDeadline(time.Now().Add(a.cfg.APITimeouts.orDefaults().Write))
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
			if err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /v1/frameworks", func(w http.ResponseWriter, _ *http.Request) {
		var out []map[string]any
		for _, fw := range a.fws.list() {
			out = append(out, map[string]any{"id": fw.ID(), "name": fw.Name, "version": fw.Version, "description": fw.Description, "adhered": a.fws.Adheres(fw.ID())})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/frameworks/{id}", func(w http.ResponseWriter, r *http.Request) {
		fw, err := a.fws.Resolve(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusNotFound, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(fw.Canonical())
	})
	mux.HandleFunc("POST /v1/frameworks", a.handlePublish)
}

// taskStates are the states a task can be in, for ?state= filters.
var taskStates = []string{StateQueued, StateNegotiating, StatePlaced, StateRunning, StateSucceeded, StateFailed, StateCancelled, StateLost, StateExpired}

// statesFilter parses ?state=queued,negotiating; nil when empty (all).
func statesFilter(q string) (map[string]bool, error) {
	if q == "" {
		return nil, nil
	}
	want := map[string]bool{}
	for _, s := range strings.Split(q, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(taskStates, s) {
			return nil, fmt.Errorf("state: %q is not a task state; use a comma-separated list of %s", s, strings.Join(taskStates, ", "))
		}
		want[s] = true
	}
	return want, nil
}
