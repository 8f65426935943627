package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/pcm-mesh/pcm/agent/results"
	"github.com/pcm-mesh/pcm/drivers/archive"
)

// Headers of GET /v1/tasks/{id}/results.
const (
	HeaderResultsDigest = "Pcm-Results-Digest"
	HeaderResultsTask   = "Pcm-Results-Task"
)

// handleResults answers GET /v1/tasks/{id}/results: this agent fetches
// the task's results archive (unless it holds it), checks its digest
// against the task's final ledger event, and sends it as a tar with the
// digest in the Pcm-Results-Digest header. The agent fetches as itself,
// so it must be entitled (the task's submitter, broker or provider, or
// the framework makes results public).
func (a *Agent) handleResults(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m, path, err := a.FetchResults(r.Context(), id, nil)
	if err != nil {
		status := statusFor(err)
		if errors.Is(err, errNoResults) {
			status = http.StatusNotFound
		} else if status == http.StatusBadRequest {
			status = http.StatusBadGateway // no holder answered with the right bytes
		}
		writeError(w, status, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeError(w, http.StatusGone, fmt.Errorf("results %s were evicted meanwhile; ask again: %w", m.Digest, err))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	h.Set(HeaderResultsDigest, m.Digest)
	h.Set(HeaderResultsTask, id)
	// The write timeout bounds each chunk, not the whole archive (nor
	// the fetch over the mesh before it).
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.APITimeouts.orDefaults().Write))
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 1<<20)
	for {
		_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.APITimeouts.orDefaults().Write))
		n, rerr := f.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			a.log.Warn("send results", "digest", m.Digest, "err", rerr)
			return
		}
	}
}

// PutResults stores an archive this agent's user uploads (pcm-agent
// results put), so tasks the agent submits can name it as an input by
// digest; it is sent only as such an input. The archive must hold files
// and directories only, at most results.max_output_bytes.
func (a *Agent) PutResults(r io.Reader) (results.Meta, error) {
	limit := a.cfg.Results.orDefaults().MaxOutputBytes
	m, err := a.res.store.Collect(func(w io.Writer) (int64, error) {
		n, err := io.Copy(w, io.LimitReader(r, limit+1))
		if err == nil && n > limit {
			err = fmt.Errorf("the archive is over results.max_output_bytes (%d bytes); send less or raise it", limit)
		}
		return n, err
	}, results.Meta{Owner: a.ID()})
	if err != nil {
		return results.Meta{}, err
	}
	f, _, err := a.res.store.Open(m.Digest)
	if err != nil {
		return results.Meta{}, err
	}
	err = archive.Check(f, 0)
	f.Close()
	if err != nil {
		if held, _ := a.res.store.Get(m.Digest); held.Owner == a.ID() {
			a.res.store.Remove(m.Digest)
		}
		return results.Meta{}, fmt.Errorf("upload: %w", err)
	}
	a.keepResults(m)
	return m, nil
}

// handlePut answers POST /v1/results (body: a tar archive).
func (a *Agent) handlePut(w http.ResponseWriter, r *http.Request) {
	// The read timeout bounds each chunk of the body, not the whole upload.
	body := &slowBody{r: r.Body, rc: http.NewResponseController(w), d: a.cfg.APITimeouts.orDefaults().Read}
	m, err := a.PutResults(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusCreated, m)
}

// slowBody extends the request's read deadline before every read.
type slowBody struct {
	r  io.Reader
	rc *http.ResponseController
	d  time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.d))
	return b.r.Read(p)
}
