package web

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

//go:embed assets
var assets embed.FS

// cookieName is the session cookie set by /login.
const cookieName = "pcm_session"

// Config configures the web page.
type Config struct {
	// API is the agent's /v1 API without its token check (the page does
	// its own); required.
	API http.Handler
	// Token is the agent's API token; "" serves the page without login.
	Token string
	// Metrics is the agent's registry, sampled for the placement charts;
	// nil leaves the charts empty.
	Metrics prometheus.Gatherer
	// TaskChanges, when set, subscribes to changes of the tasks this agent
	// brokers; the page then re-reads GET /v1/tasks only after a change
	// (and at least every 10 s) rather than on every poll. Optional.
	TaskChanges func(notify func()) (stop func())
	// Interval is how often an open event stream polls the API (default 1s).
	Interval time.Duration
	// WriteWindow is how long a client may take to read each event of the
	// stream before it is cut; it renews the server's write timeout per
	// event (default 1m).
	WriteWindow time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports what is missing.
func (c Config) Validate() error {
	if c.API == nil {
		return errors.New("web: Config.API is nil; pass the agent's /v1 handler")
	}
	if c.Interval < 0 {
		return fmt.Errorf("web: Config.Interval %v is negative", c.Interval)
	}
	return nil
}

// Server serves the page. It starts nothing: its only goroutines are the
// requests it is serving.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	static  http.Handler
	session string // the cookie value that proves a login ("" without token)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	tasks   *taskIndex
	series  *series
	unwatch func()

	closeOnce sync.Once
}

var _ http.Handler = (*Server)(nil)

// New builds the page's handler.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("web: embedded assets: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "web"),
		mux:    http.NewServeMux(),
		static: http.FileServerFS(sub),
		ctx:    ctx,
		cancel: cancel,
		series: newSeries(cfg.Metrics, 2*time.Second, 10*time.Minute),
	}
	s.tasks = newTaskIndex(s.api)
	if cfg.TaskChanges != nil {
		s.tasks.watched = true
		s.unwatch = cfg.TaskChanges(s.tasks.changed)
	}
	if cfg.Token != "" {
		mac := hmac.New(sha256.New, []byte(cfg.Token))
		mac.Write([]byte("pcm web session v1"))
		s.session = hex.EncodeToString(mac.Sum(nil))
	}
	s.routes()
	return s, nil
}

// Close ends the open event and log streams and the task subscription. It
// is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.cancel()
		if s.unwatch != nil {
			s.unwatch()
		}
	})
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /{$}", s.page("index.html"))
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.Handle("GET /static/", http.StripPrefix("/static", s.static))
	s.mux.HandleFunc("/web/v1/", s.proxy)
	s.mux.HandleFunc("GET /web/events", s.events)
	s.mux.HandleFunc("GET /web/tasks", s.handleTasks)
	s.mux.HandleFunc("POST /web/validate", s.handleValidate)
	s.mux.HandleFunc("GET /web/session", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"login": s.session != ""})
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such page %s %s; the page is at /", r.Method, r.URL.Path))
	})
}

// ServeHTTP checks the session, then serves the route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	if s.session == "" && !loopbackHost(r.Host) {
		// Without a token the page answers only to loopback names, so a
		// web site that rebinds its DNS name to 127.0.0.1 cannot read it.
		writeError(w, http.StatusForbidden, fmt.Errorf("host %q is not a loopback address: without --api-token the page answers only at 127.0.0.1, [::1] or localhost", r.Host))
		return
	}
	if !s.open(r) && !s.loggedIn(r) {
		if r.Method == http.MethodGet && r.URL.Path == "/" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		writeError(w, http.StatusUnauthorized, errors.New("not logged in: open / and enter the agent's API token"))
		return
	}
	if r.Method == http.MethodPost && r.URL.Path != "/login" && r.Header.Get("X-PCM-Web") != "1" {
		writeError(w, http.StatusForbidden, errors.New("POST from the page must carry the X-PCM-Web: 1 header"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a Host header names a loopback address.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// open reports whether r needs no session: no token, or the login page.
func (s *Server) open(r *http.Request) bool {
	return s.session == "" || r.URL.Path == "/login" || r.URL.Path == "/static/app.css"
}

func (s *Server) loggedIn(r *http.Request) bool {
	c, err := r.Cookie(cookieName)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) == 1
}

func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.session == "" || s.loggedIn(r) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	b, err := assets.ReadFile("assets/login.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if r.URL.Query().Get("failed") != "" {
		b = bytes.Replace(b, []byte("<!--error-->"), []byte(`<p class="error" role="alert">That token is wrong.</p>`), 1)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// login checks the token from the form (a POST body, never the URL) and
// sets the session cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.session == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	token := r.PostFormValue("token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) != 1 {
		s.log.Info("web login refused", "remote", r.RemoteAddr)
		http.Redirect(w, r, "/login?failed=1", http.StatusSeeOther)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged out"})
}

// proxy hands /web/v1/X to the API's /v1/X in-process; the API writes
// straight to the browser, so log streams flow as they come.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	r2 := r.Clone(ctx)
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/web")
	r2.URL.RawPath = ""
	r2.RequestURI = r2.URL.RequestURI()
	s.cfg.API.ServeHTTP(w, r2)
}

// requestContext ends with the request or with Close, whichever is first.
func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// api calls the in-process API and decodes its JSON answer into v.
func (s *Server) api(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	s.cfg.API.ServeHTTP(rec, req)
	if rec.status >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error != "" {
			return fmt.Errorf("GET %s: %s", path, e.Error)
		}
		return fmt.Errorf("GET %s: status %d", path, rec.status)
	}
	if err := json.Unmarshal(rec.body.Bytes(), v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// recorder is the minimal ResponseWriter for in-process API calls.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(status int)      { r.status = status }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
