package agent

import (
	"net/http"

	"github.com/pcm-mesh/pcm/agent/web"
)

// webPage builds the page served at / (package web). It reads the agent
// through api, the /v1 handlers without the token check: the page checks
// its own session cookie, set by its login form from the same token.
func (a *Agent) webPage(api http.Handler) http.Handler {
	ui, err := web.New(web.Config{
		API: api, Token: a.cfg.APIToken, Metrics: a.metrics.reg, Logger: a.log,
		WriteWindow: a.cfg.APITimeouts.orDefaults().Write,
		TaskChanges: func(notify func()) func() { return a.WatchTasks(func(*Task) { notify() }) },
	})
	if err != nil {
		a.log.Error("web page disabled", "err", err)
		return http.NotFoundHandler()
	}
	a.web = ui
	return ui
}
