package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/testnet"
)

// browserPath finds Debian's chromium (or another Chrome); without one the
// browser tests skip, unless PCM_REQUIRE_BROWSER is set (.ci/run sets it
// after installing chromium), when they fail.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PCM_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH and PCM_REQUIRE_BROWSER is set: apt-get install chromium (.ci/run does)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); set PCM_REQUIRE_BROWSER=1 to fail instead")
	return ""
}

// browser is one headless chromium tab that records console errors.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string
	page   string
}

func newBrowser(t *testing.T) *browser {
	path := browserPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("[%s] %s (%s:%d)", b.page, m.Text, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs actions with a deadline, failing the test with what was on screen.
func (b *browser) do(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		var text string
		tctx, tcancel := context.WithTimeout(b.ctx, 5*time.Second)
		text, _ = chromedp.Run(tctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		tcancel()
		b.t.Fatalf("%s: %v\npage text:\n%s\nconsole errors: %v", what, err, text, b.consoleErrors())
	}
}

// waitJS polls a JavaScript expression until it is truthy.
func (b *browser) waitJS(what, expr string, d time.Duration) {
	b.t.Helper()
	b.do(what, d+5*time.Second, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(100*time.Millisecond)))
}

func (b *browser) eval(expr string, out any) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.t.Fatalf("evaluate %s: %s: %v", expr, raw, err)
		}
	}
}

// setPage names the page that console errors are attributed to.
func (b *browser) setPage(page string) {
	b.mu.Lock()
	b.page = page
	b.mu.Unlock()
}

func (b *browser) open(page, url string) {
	b.t.Helper()
	b.setPage(page)
	b.do("open "+url, 30*time.Second, chromedp.Navigate(url), chromedp.WaitReady("body"))
}

// goTo changes the page's route without a reload.
func (b *browser) goTo(page, hash string) {
	b.t.Helper()
	b.setPage(page)
	b.eval(fmt.Sprintf(`location.hash = %q; true`, hash), nil)
}

// shoot saves the page at 1280 px and 390 px wide.
func (b *browser) shoot(name string) {
	b.t.Helper()
	dir := filepath.Join("testdata", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	for _, w := range []int64{1280, 390} {
		ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
		var png []byte
		err := chromedp.Do(ctx, chromedp.EmulateViewport(w, 900), chromedp.Sleep(150*time.Millisecond))
		if err == nil {
			png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		}
		cancel()
		if err != nil {
			b.t.Fatalf("screenshot %s at %d px: %v", name, w, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, w)), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.do("viewport back to 1280", 10*time.Second, chromedp.EmulateViewport(1280, 900))
}

func (b *browser) consoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

const token = "browser-test-token"

// The must-shows of issue 14 in a real browser, on a 3-agent mesh whose
// first agent has an API token.
func TestBrowserMesh(t *testing.T) {
	b := newBrowser(t)
	regions := []string{"eu-west", "us-east", "ap-south"}
	general, err := filepath.Abs("../../testnet/examples/framework-general.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := testnet.Start(t, testnet.Options{N: 3, Topology: testnet.Star, AdvertInterval: 500 * time.Millisecond,
		Configure: func(i int, cfg *agent.Config) {
			cfg.Region = regions[i]
			cfg.Zone = regions[i] + "-1a"
			cfg.Labels = map[string]string{"tier": []string{"gold", "silver", "bronze"}[i]}
			cfg.Frameworks = []string{general}
			if i == 0 {
				cfg.APIToken = token
			}
		}})
	m.WaitForMesh(60 * time.Second)
	// Every advert carries the general framework (published by whichever
	// agent came first; the same document has the same id).
	m.WaitFor(60*time.Second, "three adverts adhering to two frameworks", func() bool {
		es := m.Nodes[2].Agent().Node().Table().List(nil)
		for _, e := range es {
			if len(e.Advert.Frameworks) != 2 {
				return false
			}
		}
		return len(es) == 3
	})
	urls := make([]string, 3)
	for i, n := range m.Nodes {
		urls[i] = n.Agent().APIURL()
	}

	// Login: the page asks for the token, then shows the mesh.
	b.open("login", urls[0]+"/")
	b.waitJS("the login form", `location.pathname === "/login" && !!document.querySelector("#token")`, 10*time.Second)
	b.shoot("login")
	b.do("log in", 20*time.Second, chromedp.SendKeys("#token", token), chromedp.Click(`button[type="submit"]`), chromedp.WaitVisible("#view"))

	// Mesh: all three providers, with their regions.
	b.waitJS("three providers on the mesh page", `document.querySelectorAll("tr[data-provider]").length === 3`, 30*time.Second)
	var text string
	b.eval(`document.querySelector("#view").innerText`, &text)
	for _, r := range regions {
		if !strings.Contains(text, r) {
			t.Errorf("mesh page lacks region %s:\n%s", r, text)
		}
	}
	b.eval(`window.__noReload = 1; true`, nil)

	// Keyboard: Tab reaches the skip link, then the pages; Enter opens one.
	b.eval(`document.activeElement && document.activeElement.blur(); true`, nil)
	for _, want := range []string{"Skip to content", "Mesh", "Tasks"} {
		b.do("press Tab", 5*time.Second, chromedp.KeyEvent("\t"))
		var got string
		b.eval(`document.activeElement ? document.activeElement.innerText : ""`, &got)
		if got != want {
			t.Fatalf("Tab focused %q, want %q", got, want)
		}
	}
	b.do("press Enter", 5*time.Second, chromedp.KeyEvent("\r"))
	b.waitJS("the tasks page by keyboard", `location.hash === "#/tasks" && document.activeElement.id === "view"`, 10*time.Second)

	// Submit: an invalid document shows the field error.
	b.goTo("submit", "#/submit")
	b.waitJS("the submit form", `!!document.querySelector("#doc")`, 10*time.Second)
	setDoc := func(doc string) {
		js, _ := json.Marshal(doc)
		b.eval(fmt.Sprintf(`(() => { const a = document.querySelector("#doc"); a.value = %s; a.dispatchEvent(new Event("input")); return true })()`, js), nil)
	}
	setDoc("name: bad\nresources: {cpu: -2, memory: 64Mi}\ndriver: local\ncommand: [\"true\"]\n")
	b.waitJS("the field error", `(document.querySelector("#field-errors")||{}).innerText?.includes("resources.cpu")`, 15*time.Second)
	b.shoot("submit-invalid")
	// Placed on agent 1 (the only one in us-east): its logs come over the mesh.
	doc := "name: web-lines\nframework: general\nresources: {cpu: 250m, memory: 64Mi}\ndriver: local\n" +
		"constraints: ['provider.attrs.region == \"us-east\"']\n" +
		"command: [sh, -c, 'for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 1; done']\ndeadline: 10m\n"
	setDoc(doc)
	b.waitJS("the document valid", `(document.querySelector("#verdict")||{}).innerText?.includes("valid") && !document.querySelector("#field-errors")`, 15*time.Second)
	b.shoot("submit")

	// The task page: state changes and logs stream without a reload.
	b.setPage("task")
	b.do("submit", 20*time.Second, chromedp.Click("#submit"))
	b.waitJS("the task's page", `location.hash.startsWith("#/task/")`, 20*time.Second)
	var hash string
	b.eval(`location.hash`, &hash)
	id := strings.TrimPrefix(hash, "#/task/")
	t.Logf("task %s", id)
	sawLive := false
	deadline := time.Now().Add(90 * time.Second)
	for {
		var st struct{ State, Logs string }
		b.eval(`({state: (document.querySelector("#task-state")||{}).innerText||"", logs: (document.querySelector("#logs")||{}).textContent||""})`, &st)
		if st.State == "running" && strings.Contains(st.Logs, "line 1") && !strings.Contains(st.Logs, "line 8") {
			sawLive = true
		}
		if st.State == "succeeded" && strings.Contains(st.Logs, "line 8") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: state %q, logs %q after 90s; console errors %v", id, st.State, st.Logs, b.consoleErrors())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawLive {
		t.Errorf("never saw the logs grow while the task ran (streamed logs should show line 1 before line 8)")
	}
	var still int
	b.eval(`window.__noReload || 0`, &still)
	if still != 1 {
		t.Errorf("the page reloaded (window marker lost)")
	}
	b.waitJS("the ledger's agreement in the timeline", `document.querySelector("#h-rounds") !== null`, 10*time.Second)
	b.shoot("task")

	// Cancel: a long task submitted from the page, cancelled from its page.
	b.goTo("submit", "#/submit")
	b.waitJS("the submit form again", `!!document.querySelector("#doc")`, 10*time.Second)
	setDoc("name: web-long\nresources: {cpu: 250m, memory: 64Mi}\ndriver: local\ncommand: [sleep, '300']\ndeadline: 10m\n")
	b.waitJS("the long task valid", `(document.querySelector("#verdict")||{}).innerText?.includes("web-long")`, 15*time.Second)
	b.setPage("cancel")
	b.do("submit the long task", 20*time.Second, chromedp.Click("#submit"))
	b.waitJS("the long task running", `location.hash !== "#/task/`+id+`" && location.hash.startsWith("#/task/") && (document.querySelector("#task-state")||{}).innerText === "running"`, 60*time.Second)
	b.do("cancel", 10*time.Second, chromedp.Click("#cancel"))
	b.waitJS("the long task cancelled", `(document.querySelector("#task-state")||{}).innerText === "cancelled"`, 60*time.Second)

	// The other agents' pages list the task.
	for i := 1; i < 3; i++ {
		b.open(fmt.Sprintf("tasks@%d", i), urls[i]+"/#/tasks")
		b.waitJS(fmt.Sprintf("agent %d's tasks page to list %s", i, id), fmt.Sprintf(`!!document.querySelector('tr[data-task=%q]')`, id), 30*time.Second)
		if i == 1 {
			b.goTo("task@1", "#/task/"+id)
			b.waitJS("the task's state on agent 1", `(document.querySelector("#task-state")||{}).innerText === "succeeded"`, 30*time.Second)
			b.goTo("tasks@1", "#/tasks")
			b.waitJS("the list again", fmt.Sprintf(`!!document.querySelector('tr[data-task=%q]')`, id), 10*time.Second)
			b.shoot("tasks")
			// Filter by state: only the cancelled task is left.
			b.eval(`(() => { const s = document.querySelector("#f-state"); s.value = "cancelled"; s.dispatchEvent(new Event("change")); return true })()`, nil)
			b.waitJS("the state filter", fmt.Sprintf(`document.querySelectorAll("tr[data-task]").length === 1 && !document.querySelector('tr[data-task=%q]') && document.querySelector("tr[data-task]").innerText.includes("cancelled")`, id), 10*time.Second)
		}
	}

	// Frameworks and the ledger, back on agent 0 (the session cookie holds).
	b.open("frameworks", urls[0]+"/#/frameworks")
	b.eval(`window.__noReload = 1; true`, nil)
	b.waitJS("the frameworks list", `document.querySelectorAll("#view tbody tr").length > 0`, 20*time.Second)
	b.shoot("frameworks")
	b.waitJS("the general framework listed", `[...document.querySelectorAll("#view tbody a")].some((a) => a.textContent === "general")`, 20*time.Second)
	b.eval(`[...document.querySelectorAll("#view tbody a")].find((a) => a.textContent === "general").click(); true`, nil)
	b.setPage("framework")
	b.waitJS("the general framework's page", `location.hash.startsWith("#/framework/") && document.querySelector("#view h1")?.innerText.startsWith("general") && document.body.innerText.includes("least-loaded")`, 20*time.Second)
	b.shoot("framework")

	b.goTo("ledger", "#/ledger")
	b.waitJS("the ledger's entries", `document.querySelectorAll("tr[data-index]").length > 0`, 20*time.Second)
	b.do("verify", 10*time.Second, chromedp.Click("#verify"))
	b.waitJS("verify OK", `(document.querySelector("#verify-ok")||{}).innerText?.startsWith("OK")`, 30*time.Second)
	b.waitJS("balances drawn", `document.querySelector("#view svg rect.pos, #view svg rect.neg") !== null || (document.querySelector("#h-bal")?.parentElement.innerText.includes("No settlements"))`, 20*time.Second)
	b.shoot("ledger")
	// Filter by type: task events only (the ledger bills their attempts
	// as the final ones apply, so the list shows what was billed).
	b.eval(`(() => { const s = document.querySelector("#l-type"); s.value = "task_event"; s.dispatchEvent(new Event("change")); return true })()`, nil)
	b.waitJS("task events only", `(() => { const rows = [...document.querySelectorAll("tr[data-index]")]; return rows.length > 0 && rows.every((r) => r.innerText.includes("task_event")) })()`, 10*time.Second)
	b.eval(`document.querySelector("tr[data-index] a").click(); true`, nil)
	b.setPage("entry")
	b.waitJS("an entry's signatures", `location.hash.startsWith("#/entry/") && document.body.innerText.includes("Signatures")`, 10*time.Second)

	// The mesh page last, once the placement charts have points.
	b.goTo("mesh", "#/mesh")
	b.waitJS("the placement charts", `document.querySelectorAll("#view polyline").length >= 3`, 30*time.Second)
	b.shoot("mesh")

	// Adverts are live: a stopped provider leaves the page without a reload.
	m.Stop(2)
	b.waitJS("the stopped provider gone", `document.querySelectorAll("tr[data-provider]").length === 2`, 30*time.Second)
	b.eval(`window.__noReload || 0`, &still)
	if still != 1 {
		t.Errorf("the page reloaded (window marker lost)")
	}

	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
