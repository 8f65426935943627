package sim

import (
	"bytes"
	"context"
	"io"
	"time"

	"github.com/pcm-mesh/pcm/drivers"
)

// task is one simulated task. Fields other than done are guarded by the
// driver's lock.
type task struct {
	res     drivers.Resources
	st      drivers.Status
	planned drivers.Status // the final status it will reach at end
	output  string
	end     time.Time
	timer   *time.Timer
	done    chan struct{}
}

// logs returns the output visible now: all of it once the task ended
// (unless it was cancelled), nothing before.
func (t *task) logs() string {
	if t.st.State.Final() && t.st.State != drivers.StateCancelled {
		return t.output
	}
	return ""
}

// followReader waits for the task to end, then reads its output.
type followReader struct {
	ctx    context.Context
	done   <-chan struct{}
	closed <-chan struct{}
	get    func() string
	offset int64
	r      *bytes.Reader
}

func (f *followReader) Read(p []byte) (int, error) {
	if f.r == nil {
		select {
		case <-f.done:
		case <-f.ctx.Done():
			return 0, f.ctx.Err()
		case <-f.closed:
			return 0, drivers.ErrClosed
		}
		f.r = bytes.NewReader([]byte(tail(f.get(), f.offset)))
	}
	return f.r.Read(p)
}

func (f *followReader) Close() error { return nil }

func tail(s string, offset int64) string {
	if offset >= int64(len(s)) {
		return ""
	}
	return s[max(0, offset):]
}

var _ io.ReadCloser = (*followReader)(nil)
