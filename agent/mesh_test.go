package agent_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/testnet"
)

func getJSON(t *testing.T, url string, v any) error {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func providersSeen(t *testing.T, apiURL string) map[string]bool {
	var entries []mesh.Entry
	if err := getJSON(t, apiURL+"/v1/resources", &entries); err != nil {
		t.Logf("resources: %v", err)
		return nil
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Advert.Provider] = true
	}
	return seen
}

// Five agents bootstrapped in a chain each list all five providers; after
// one stops, the others drop it within its TTL.
func TestFiveAgentsSeeEachOtherAndDropAStoppedOne(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 5, Topology: testnet.Chain, AdvertInterval: 300 * time.Millisecond})
	start := time.Now()
	for i, n := range m.Nodes {
		url := n.Agent().APIURL()
		m.WaitFor(5*time.Second-time.Since(start), fmt.Sprintf("agent %d to list 5 providers", i), func() bool {
			return len(providersSeen(t, url)) == 5
		})
	}
	t.Logf("all 5 tables complete after %s", time.Since(start))

	stopped := m.Nodes[2].Agent().ID()
	m.Stop(2)
	stopAt := time.Now()
	ttl := 3 * 300 * time.Millisecond
	for _, i := range []int{0, 1, 3, 4} {
		url := m.Nodes[i].Agent().APIURL()
		// The last advert was received at most one interval before the
		// stop, so it expires within the TTL (plus the expiry tick).
		m.WaitFor(ttl+time.Second-time.Since(stopAt), fmt.Sprintf("agent %d to drop the stopped agent", i), func() bool {
			seen := providersSeen(t, url)
			return len(seen) == 4 && !seen[stopped]
		})
	}
}

func TestRestartKeepsPeerID(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 1})
	before := m.Nodes[0].Agent().ID()
	m.Restart(0)
	if after := m.Nodes[0].Agent().ID(); after != before {
		t.Fatalf("peer id changed on restart: %s -> %s", before, after)
	}
}
