package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/mesh"
)

// Which agent a client command talks to (a flag on the command line beats
// its environment variable; PCM_API and PCM_DATA_DIR count as given only
// when neither flag is on the command line):
//
//   - --api given: that agent. With --data-dir also given, the agent must
//     be the one owning the data dir (same peer id), else the command stops.
//   - --data-dir given without --api: the agent that owns the data dir,
//     found through <data-dir>/api.json (written by `join`) and checked by
//     its peer id. With no such agent the command fails with
//     errNoOwningAgent (exit 3); the commands that can read a data dir
//     offline (id, ledger verify, ledger export) then do so and say it.
//   - neither: the default API, http://127.0.0.1:8999.

// errNoOwningAgent: --data-dir names a directory no running agent owns.
var errNoOwningAgent = errors.New("no running agent owns the data dir")

// target is where client commands send their requests.
type target struct {
	base string
	// note says how base was chosen when --data-dir played a part ("" else).
	note string
}

// dataDirSet reports whether the user named a data dir, as opposed to the
// default ~/.pcm: --data-dir, or PCM_DATA_DIR without --api.
func dataDirSet(c *cli.Context) bool {
	if c.IsSet("data-dir") {
		return true
	}
	return os.Getenv("PCM_DATA_DIR") != "" && !c.IsSet("api")
}

// apiSet reports whether the user named an API: --api, or PCM_API
// without --data-dir.
func apiSet(c *cli.Context) bool {
	if c.IsSet("api") {
		return true
	}
	return os.Getenv("PCM_API") != "" && !c.IsSet("data-dir")
}

// dirPeerID reads the peer id of dir's identity without creating one.
func dirPeerID(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, mesh.KeyFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("--data-dir %s holds no identity (%s): not an agent's data dir; `pcm-agent --data-dir %s id --init` creates one", dir, mesh.KeyFile, dir)
		}
		return "", fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	id, err := mesh.LoadOrCreateIdentity(dir)
	if err != nil {
		return "", err
	}
	return id.ID(), nil
}

// resolveTarget decides which agent the command talks to (see above).
func resolveTarget(c *cli.Context) (target, error) {
	api := c.String("api")
	if !apiSet(c) {
		api = defaultAPI
	}
	if !dataDirSet(c) {
		return target{base: trimBase(api)}, nil
	}
	dir := c.String("data-dir")
	want, err := dirPeerID(dir)
	if err != nil {
		return target{}, withCode(exitUsage, err)
	}
	if apiSet(c) {
		got, err := peerIDAt(c, trimBase(api))
		if err != nil {
			return target{}, err
		}
		if got != want {
			return target{}, withCode(exitUsage, fmt.Errorf("--api %s is agent %s, but --data-dir %s belongs to agent %s: drop --api to reach the agent owning the data dir, or drop --data-dir", api, got, dir, want))
		}
		return target{base: trimBase(api), note: fmt.Sprintf("agent %s at %s (owns %s)", shortID(want), trimBase(api), dir)}, nil
	}
	info, err := agent.ReadAPIFile(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return target{}, withCode(exitUnavailable, fmt.Errorf("%w %s: start it with `pcm-agent --data-dir %s join`, or pass --api", errNoOwningAgent, dir, dir))
	}
	if err != nil {
		return target{}, withCode(exitUsage, err)
	}
	if info.PeerID != want {
		return target{}, withCode(exitUsage, fmt.Errorf("%s names agent %s but the data dir's identity is %s; delete the file (a running agent rewrites it at start)", filepath.Join(dir, agent.APIFile), info.PeerID, want))
	}
	got, err := peerIDAt(c, info.URL)
	if exitCode(err) == exitUnavailable {
		return target{}, withCode(exitUnavailable, fmt.Errorf("%w %s: its agent (%s, recorded in %s) does not answer at %s; it was stopped or crashed", errNoOwningAgent, dir, shortID(want), agent.APIFile, info.URL))
	}
	if err != nil {
		return target{}, err
	}
	if got != want {
		return target{}, withCode(exitUnavailable, fmt.Errorf("%w %s: %s now answers as agent %s, not the data dir's %s (a stale %s)", errNoOwningAgent, dir, info.URL, got, want, agent.APIFile))
	}
	return target{base: info.URL, note: fmt.Sprintf("agent %s at %s (owns %s)", shortID(want), info.URL, dir)}, nil
}

// peerIDAt asks the agent at base for its peer id.
func peerIDAt(c *cli.Context, base string) (string, error) {
	probe := &apiClient{base: base, token: c.String("api-token"), http: &http.Client{Timeout: 0}, resolved: true}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	var st agent.Status
	if err := probe.do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return "", err
	}
	return st.PeerID, nil
}
