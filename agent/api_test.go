package agent_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/testnet"
)

func TestAPIRefusesOpenNonLoopbackBind(t *testing.T) {
	cfg := agent.DefaultConfig()
	cfg.APIListen = "0.0.0.0:8999"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "api_token") {
		t.Fatalf("non-loopback API without token: err = %v, want one naming api_token", err)
	}
	cfg.APIToken = "s3cret"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with a token: %v", err)
	}
}

func TestAPITokenRequired(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1, Configure: func(_ int, c *agent.Config) { c.APIToken = "s3cret" }})
	url := m.Nodes[0].Agent().APIURL() + "/v1/status"
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer s3cret", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: status %d, want %d", tc.header, resp.StatusCode, tc.want)
		}
	}
}

func TestLoadConfigNamesBadField(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"regoin: x\n", `line 1: regoin: unknown field "regoin"; known fields: advert_interval, api_listen,`},
		{"ledger:\n  max_votrs: 3\n", `line 2: ledger.max_votrs: unknown field "max_votrs"; known fields: admit, bootstrap, max_non_voters, max_voters,`},
		{"advert_interval: soon\n", "line 1: advert_interval: `soon` is not a duration"},
		{"labels: [a]\n", "line 1: labels: a list is not a mapping"},
		// yaml names line 2 (where the mapping began); the text broke on 3.
		{"labels:\n  a: b\n c: d\n", "line 3: not valid YAML: did not find expected key"},
		{"drivers:\n  docker: {}\n", "drivers.docker"},
		{"prices:\n  cpu: -1\n", "prices.cpu"},
		{"ledger:\n  raft_multiplier: 50\n", "ledger.raft_multiplier 50: use 1 to 10"},
	} {
		_, err := agent.LoadConfig("agent.yaml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "agent.yaml") || strings.Contains(err.Error(), "agent.Config") {
			t.Errorf("%q: err = %v, want it to name agent.yaml and %q", tc.doc, err, tc.want)
		}
	}
	if _, err := agent.LoadConfig("empty.yaml", nil); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	m.WaitForMesh(10 * time.Second)
	a := m.Nodes[0].Agent()
	tk, err := a.Submit(shellTask("metered", "true"), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, m, a, tk.ID, 20*time.Second, agent.StateSucceeded)
	resp, err := http.Get(a.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`pcm_broker_tasks_total{state="succeeded"} 1`, "pcm_placement_seconds_count 1", "pcm_providers 1", `pcm_provider_attempts_total{event="succeeded"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAPIBodyLimitsAnswer413: a framework over the ledger's limit is
// refused whole with 413, never cut and committed.
func TestAPIBodyLimitsAnswer413(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	base := m.Nodes[0].Agent().APIURL()
	big := "name: big\nversion: \"1\"\ndescription: \"" + strings.Repeat("x", 300<<10) + "\"\n"
	for _, path := range []string{"/v1/frameworks", "/v1/tasks"} {
		resp, err := http.Post(base+path, "application/yaml", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("POST %s with 300 KiB: %d %s; want 413", path, resp.StatusCode, body)
		}
	}
}

// TestAPIRefusesCrossSiteBrowserRequests: a web page on another site cannot
// submit a task through a local agent (CSRF); the CLI (no Origin) can.
func TestAPIRefusesCrossSiteBrowserRequests(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	url := m.Nodes[0].Agent().APIURL() + "/v1/tasks"
	doc := "name: x\nresources: {cpu: 0.1, memory: 16Mi}\ndriver: local\ncommand: [\"true\"]\n"
	for _, tc := range []struct {
		header, value string
		want          int
	}{
		{"Origin", "https://evil.example", http.StatusForbidden},
		{"Sec-Fetch-Site", "cross-site", http.StatusForbidden},
		{"", "", http.StatusCreated},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(doc))
		req.Header.Set("Content-Type", "text/plain")
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %q: status %d, want %d", tc.header, tc.value, resp.StatusCode, tc.want)
		}
	}
}

// TestAPIPublishWithoutLeaderAnswers503: with its ledger's quorum gone, a
// publish is answered 503 naming the reason within a bounded time.
func TestAPIPublishWithoutLeaderAnswers503(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3})
	m.WaitForMesh(30 * time.Second)
	a := m.Nodes[0].Agent()
	m.WaitFor(30*time.Second, "three voters", func() bool {
		mem, err := a.Ledger().Members(t.Context())
		return err == nil && len(mem.Voters) == 3
	})
	m.Stop(1)
	m.Stop(2)
	doc, err := os.ReadFile("../testnet/examples/framework-ai.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.Post(a.APIURL()+"/v1/frameworks", "application/yaml", bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "leader") {
		t.Fatalf("publish without a quorum: %d %s; want 503 naming the leader", resp.StatusCode, body)
	}
	t.Logf("answered 503 after %s", took.Round(time.Millisecond))
}

// TestStartRefusesAFullDisk: an agent whose data dir has less free space
// than min_free_mb refuses to start, naming the data dir and the fix
// (Badger would crash with SIGBUS on a full disk).
func TestStartRefusesAFullDisk(t *testing.T) {
	dir := t.TempDir()
	cfg := agent.DefaultConfig()
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.APIListen = ""
	cfg.MinFreeMB = 1 << 40 // more than any disk has
	id, err := mesh.LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := testnet.DefaultDrivers(0, dir+"/drivers")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Deps{Identity: id, Drivers: ds})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	err = a.Start(t.Context())
	if !errors.Is(err, agent.ErrDiskFull) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "min_free_mb") {
		t.Fatalf("start on a full disk: %v; want ErrDiskFull naming %s and min_free_mb", err, dir)
	}
}
