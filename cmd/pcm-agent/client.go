package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// apiClient talks to a running agent's HTTP API. Which agent is decided
// on the first request (resolveTarget: --api, or the agent owning
// --data-dir).
type apiClient struct {
	c        *cli.Context
	base     string
	token    string
	http     *http.Client
	resolved bool
	err      error
}

func newAPIClient(c *cli.Context) *apiClient {
	return &apiClient{
		c:     c,
		token: c.String("api-token"),
		http:  &http.Client{Timeout: 0},
	}
}

func trimBase(s string) string { return strings.TrimRight(s, "/") }

// resolve picks the agent once; when --data-dir chose it, it says so on
// stderr.
func (a *apiClient) resolve() error {
	if a.resolved {
		return a.err
	}
	a.resolved = true
	t, err := resolveTarget(a.c)
	if err != nil {
		a.err = err
		return err
	}
	a.base = t.base
	if t.note != "" {
		fmt.Fprintf(a.c.App.ErrWriter, "(%s)\n", t.note)
	}
	return nil
}

// do sends a request and decodes a JSON answer into out (when non-nil).
// API errors come back as {"error": "..."} and are returned as such.
func (a *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := a.raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// raw sends a request and returns the response for a 2xx status; the caller
// closes the body. Non-2xx answers become errors carrying the API's message.
func (a *apiClient) raw(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if err := a.resolve(); err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, withCode(exitUsage, fmt.Errorf("--api %q: %w", a.base, err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, withCode(exitUnavailable, fmt.Errorf("cannot reach the agent at %s (is `pcm-agent join` running? set --api): %w", a.base, err))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, apiStatusError(resp.StatusCode, e.Error)
		}
		return nil, apiStatusError(resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

func apiStatusError(status int, msg string) error {
	code := exitFailure
	if status == http.StatusBadRequest || status == http.StatusUnprocessableEntity {
		code = exitUsage
	}
	return withCode(code, fmt.Errorf("%s (HTTP %d)", msg, status))
}

// get is do with GET and a default timeout.
func (a *apiClient) get(c *cli.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	return a.do(ctx, http.MethodGet, path, nil, out)
}

// doRaw sends method path with a raw body (a document, not JSON-encoded)
// and decodes the JSON answer.
func (a *apiClient) doRaw(ctx context.Context, method, path string, body io.Reader, out any) error {
	if err := a.resolve(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("--api %q: %w", a.base, err))
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return withCode(exitUnavailable, fmt.Errorf("cannot reach the agent at %s (is `pcm-agent join` running? set --api): %w", a.base, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return apiStatusError(resp.StatusCode, e.Error)
		}
		return apiStatusError(resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
