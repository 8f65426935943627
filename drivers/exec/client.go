package exec

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/pcm-mesh/pcm/drivers"
)

// maxLine bounds one protocol line (see PROTOCOL.md).
const maxLine = 16 << 20

type request struct {
	ID     uint64 `json:"id"`
	Method string `json:"method"`
	Params any    `json:"params"`
}

type response struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// err maps a plugin error to the drivers sentinels by code.
func (e *wireError) err(method string) error {
	sentinel := map[string]error{
		"invalid_spec": drivers.ErrInvalidSpec,
		"capacity":     drivers.ErrCapacity,
		"not_found":    drivers.ErrNotFound,
		"exists":       drivers.ErrExists,
	}[e.Code]
	if sentinel == nil {
		sentinel = ErrPlugin
	}
	return fmt.Errorf("exec: plugin %s: %w: %s", method, sentinel, e.Message)
}

// proc is one running plugin process. dead is closed (with exitErr set)
// once its stdout ends; every pending call then fails.
type proc struct {
	cmd   *osexec.Cmd
	stdin io.WriteCloser

	wmu sync.Mutex // serializes request lines

	mu      sync.Mutex
	pending map[uint64]chan response
	nextID  uint64
	exitErr error
	dead    chan struct{}
	stderr  *tail
	wg      sync.WaitGroup
}

// spawn starts the plugin and its reader goroutines.
func spawn(cfg Config, log *slog.Logger) (*proc, error) {
	cmd := osexec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Env = os.Environ()
	for k, v := range cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// Its own process group, so kill reaches the plugin's children too
	// (a shell plugin's child holding stdout open would otherwise keep the
	// reader, and Close, waiting forever).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec: start plugin %q: %w; check config command", cfg.Command[0], err)
	}
	p := &proc{cmd: cmd, stdin: stdin, pending: make(map[uint64]chan response), dead: make(chan struct{}), stderr: &tail{max: 4096}}
	stderrDone := make(chan struct{})
	p.wg.Go(func() {
		defer close(stderrDone)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			p.stderr.add(s.Text())
			log.Info("plugin stderr", "line", s.Text())
		}
	})
	p.wg.Go(func() {
		err := p.read(stdout)
		<-stderrDone // Wait closes the pipes: read them to the end first
		werr := cmd.Wait()
		p.fail(fmt.Errorf("%w (%v; %v); stderr: %q; it is restarted on the next call", ErrPluginExited, err, werr, p.stderr.String()))
	})
	return p, nil
}

// read dispatches response lines to their callers until stdout ends.
func (p *proc) read(r io.Reader) error {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), maxLine)
	for s.Scan() {
		var resp response
		if err := json.Unmarshal(s.Bytes(), &resp); err != nil {
			return fmt.Errorf("malformed response line %.200q: %w", s.Bytes(), err)
		}
		p.mu.Lock()
		ch := p.pending[resp.ID]
		delete(p.pending, resp.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	return io.EOF
}

func (p *proc) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exitErr != nil {
		return
	}
	p.exitErr = err
	close(p.dead)
	p.pending = nil
}

// call sends one request and waits for its response.
func (p *proc) call(ctx context.Context, method string, params, result any) error {
	p.mu.Lock()
	if p.exitErr != nil {
		p.mu.Unlock()
		return p.exitErr
	}
	p.nextID++
	id := p.nextID
	ch := make(chan response, 1)
	p.pending[id] = ch
	p.mu.Unlock()

	b, err := json.Marshal(request{ID: id, Method: method, Params: params})
	if err != nil {
		return fmt.Errorf("exec: encode %s: %w", method, err)
	}
	p.wmu.Lock()
	_, err = p.stdin.Write(append(b, '\n'))
	p.wmu.Unlock()
	if err != nil {
		<-p.dead // the reader sees the exit and records why
		return p.exitErr
	}
	select {
	case resp := <-ch:
		if resp.Error != nil {
			return resp.Error.err(method)
		}
		if result != nil {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				return fmt.Errorf("exec: plugin %s: %w: bad result: %v", method, ErrPlugin, err)
			}
		}
		return nil
	case <-p.dead:
		return p.exitErr
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		return fmt.Errorf("exec: plugin %s: %w", method, ctx.Err())
	}
}

// close asks the plugin to exit (shutdown, then EOF on stdin, then kill)
// and waits for its goroutines.
func (p *proc) close(ctx context.Context) {
	_ = p.call(ctx, "shutdown", struct{}{}, nil)
	_ = p.stdin.Close()
	select {
	case <-p.dead:
	case <-ctx.Done():
		p.kill()
	}
	p.wg.Wait()
}

// tail keeps the last max bytes of lines written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []string
	n   int
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, line)
	t.n += len(line)
	for t.n > t.max && len(t.buf) > 1 {
		t.n -= len(t.buf[0])
		t.buf = t.buf[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.buf, "\n")
}

// kill ends the plugin and every process in its group.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Process.Kill()
	}
}
