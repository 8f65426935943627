package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
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
