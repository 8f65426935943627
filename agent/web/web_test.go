package web_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/agent/web"
	"github.com/pcm-mesh/pcm/testnet"
)

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func do(t *testing.T, c *http.Client, method, u, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// With --api-token the page asks for the token, keeps it out of URLs and
// cookies, and every page and stream refuses requests without the session.
func TestTokenGuardsEveryPageAndStream(t *testing.T) {
	const token = "s3cret-token"
	m := testnet.Start(t, testnet.Options{N: 1, Configure: func(_ int, cfg *agent.Config) { cfg.APIToken = token }})
	base := m.Nodes[0].Agent().APIURL()
	anon := &http.Client{CheckRedirect: noRedirect, Timeout: 10 * time.Second}

	if r := do(t, anon, "GET", base+"/", "", nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Errorf("GET / without a session: %s to %q, want 303 to /login", r.Status, r.Header.Get("Location"))
	}
	if r := do(t, anon, "GET", base+"/login", "", nil); r.StatusCode != http.StatusOK {
		t.Errorf("GET /login: %s", r.Status)
	}
	guarded := []struct{ method, path string }{
		{"GET", "/index.html"}, {"GET", "/static/app.js"}, {"GET", "/static/pages.js"},
		{"GET", "/web/events"}, {"GET", "/web/tasks"}, {"GET", "/web/session"},
		{"GET", "/web/v1/status"}, {"GET", "/web/v1/ledger/entries"}, {"GET", "/web/v1/tasks/x/logs?follow=1"},
		{"POST", "/web/v1/tasks"}, {"POST", "/web/validate"}, {"GET", "/web/events?token=" + token},
		{"GET", "/v1/status"}, {"GET", "/metrics"},
	}
	for _, g := range guarded {
		for _, hdr := range []map[string]string{nil, {"Cookie": "pcm_session=" + token, "X-PCM-Web": "1"}} {
			if r := do(t, anon, g.method, base+g.path, "", hdr); r.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %v: %s, want 401", g.method, g.path, hdr, r.Status)
			}
		}
	}

	// A wrong token is refused; the right one sets an HttpOnly,
	// SameSite=Strict cookie that does not hold the token.
	form := url.Values{"token": {"wrong"}}.Encode()
	ctype := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if r := do(t, anon, "POST", base+"/login", form, ctype); r.Header.Get("Location") != "/login?failed=1" || len(r.Cookies()) != 0 {
		t.Errorf("wrong token: %s to %q, cookies %v", r.Status, r.Header.Get("Location"), r.Cookies())
	}
	r := do(t, anon, "POST", base+"/login", url.Values{"token": {token}}.Encode(), ctype)
	cs := r.Cookies()
	if r.StatusCode != http.StatusSeeOther || len(cs) != 1 {
		t.Fatalf("login: %s, cookies %v", r.Status, cs)
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, token) || c.Value == "" {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not the token", c)
	}

	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(base)
	jar.SetCookies(u, cs)
	user := &http.Client{Jar: jar, CheckRedirect: noRedirect, Timeout: 10 * time.Second}
	for _, p := range []string{"/", "/static/app.js", "/web/tasks", "/web/v1/status"} {
		if r := do(t, user, "GET", base+p, "", nil); r.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the session: %s", p, r.Status)
		}
	}
	// POSTs need the page's header as well (a cross-site form cannot send it).
	doc := "name: t\nresources: {cpu: 100m, memory: 16Mi}\ndriver: local\ncommand: [\"true\"]\n"
	if r := do(t, user, "POST", base+"/web/v1/tasks", doc, nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("POST without X-PCM-Web: %s, want 403", r.Status)
	}
	if r := do(t, user, "POST", base+"/web/v1/tasks", doc, map[string]string{"X-PCM-Web": "1"}); r.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(r.Body)
		t.Errorf("POST a task with the session: %s %s", r.Status, b)
	}
	// The event stream opens with the session.
	ev := do(t, user, "GET", base+"/web/events", "", nil)
	line, err := bufio.NewReader(ev.Body).ReadString('\n')
	if ev.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(line, "retry:") {
		t.Errorf("event stream with the session: %s %q %v", ev.Status, line, err)
	}
	// The CLI's bearer token still works on /v1.
	if r := do(t, anon, "GET", base+"/v1/status", "", map[string]string{"Authorization": "Bearer " + token}); r.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/status with the bearer token: %s", r.Status)
	}
}

// Close ends open event streams, so the agent's server can shut down.
func TestCloseEndsEventStreams(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/v1/status") || strings.HasPrefix(r.URL.Path, "/v1/ledger/members") {
			_, _ = io.WriteString(w, `{}`)
			return
		}
		_, _ = io.WriteString(w, `[]`)
	})
	s, err := web.New(web.Config{API: api, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	resp := do(t, srv.Client(), "GET", srv.URL+"/web/events", "", nil)
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q, %v", line, err)
	}
	s.Close()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream still runs 10s after Close")
	}
}

// Without a token the page answers only to loopback Host names.
func TestNoTokenNeedsLoopbackHost(t *testing.T) {
	s, err := web.New(web.Config{API: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]int{
		"127.0.0.1:8999": http.StatusOK, "localhost:8999": http.StatusOK, "[::1]:8999": http.StatusOK,
		"evil.example:8999": http.StatusForbidden, "10.0.0.5:8999": http.StatusForbidden,
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: %d, want %d", host, rec.Code, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := web.New(web.Config{}); err == nil || !strings.Contains(err.Error(), "Config.API") {
		t.Errorf("New without an API: %v, want an error naming Config.API", err)
	}
}
