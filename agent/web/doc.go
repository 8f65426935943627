// Package web is the mesh's web page: a small browser app, embedded in the
// binary, that every agent serves at / on its API listener.
//
// The page is plain HTML, CSS and JavaScript (assets/, no build step, no
// network at run time); charts are drawn as SVG by the page itself. It reads
// the agent only through the agent's own /v1 HTTP API, which the package
// receives as an http.Handler and calls in-process, plus the agent's
// Prometheus registry for the placement charts. It adds:
//
//   - /web/v1/...   the /v1 API, for the page (same handlers, same errors);
//   - /web/events   server-sent events: status, resources, peers, the
//     mesh's tasks and the metric series, sent when they change;
//   - /web/tasks    every task the ledger knows (agreements, events,
//     settlements) merged with the ones this agent brokers;
//   - /web/validate a task document checked with rules.ParseTask, the same
//     field errors as `pcm-agent task validate`;
//   - /web/session  whether the page needs a login;
//   - /login, /logout when the agent has an API token.
//
// Invariants:
//   - With a token, every route but /login (and the login page's style
//     sheet) refuses requests that lack the session cookie; the cookie is
//     HttpOnly, SameSite=Strict, and holds an HMAC of the token, never the
//     token, which never appears in a URL either.
//   - Requests that change something (POST) must also carry the
//     X-PCM-Web header, which a cross-site form cannot send.
//   - Without a token the page answers only to a loopback Host (127.0.0.1,
//     [::1], localhost), against DNS rebinding.
//   - Close ends every open event stream and proxied log stream, so the
//     agent's HTTP server can shut down promptly.
//   - The event stream polls the in-process API once per Interval and sends
//     only what changed: an idle open page costs a fraction of a percent of a
//     core (BenchmarkIdlePage).
package web
