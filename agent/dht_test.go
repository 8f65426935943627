package agent_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/drivers"
	"github.com/pcm-mesh/pcm/drivers/local"
	"github.com/pcm-mesh/pcm/mesh"
	"github.com/pcm-mesh/pcm/testnet"
)

// Must-show 4: with a short reprovide interval every agent provides its
// keys again and again; a framework's adherent (not its publisher) and a
// GPU provider are found under pcm:framework:<id> and pcm:gpu:<model> by
// a fresh peer that joins afterwards.
func TestDHTKeysAreReprovidedAndFoundByAFreshPeer(t *testing.T) {
	m := testnet.Start(t, testnet.Options{N: 3, Topology: testnet.Star,
		Configure: func(_ int, c *agent.Config) { c.ReprovideInterval = 300 * time.Millisecond },
		Drivers: func(i int, dir string) ([]drivers.Driver, error) {
			capacity := drivers.Resources{CPUs: 2, MemoryMB: 2048}
			if i == 1 {
				capacity.GPUs, capacity.GPUModel = 2, "A100"
			}
			d, err := local.New(local.Config{StateDir: dir, Capacity: capacity}, nil)
			return []drivers.Driver{d}, err
		}})
	m.WaitForMesh(30 * time.Second)
	gpu, adherent := m.Nodes[1].Agent(), m.Nodes[2].Agent()

	// The adherent publishes and adheres through its API.
	resp, err := http.Post(adherent.APIURL()+"/v1/frameworks?name=fw.yaml&adhere=1", "application/yaml",
		bytes.NewReader([]byte("name: dht-fw\nversion: '1'\ntemplates: {cpu: {unit: cores}, memory: {unit: MiB}}\n")))
	if err != nil {
		t.Fatal(err)
	}
	var pub struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&pub)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %s %v", resp.Status, err)
	}

	provides := func(a *agent.Agent, key string) int {
		for _, k := range a.Status().DHT.Provided {
			if k.Key == key {
				return k.Provides
			}
		}
		return 0
	}
	m.WaitFor(time.Minute, "the driver key provided three times", func() bool { return provides(gpu, mesh.KeyDriverPrefix+"local") >= 3 })
	m.WaitFor(time.Minute, "the GPU key provided twice", func() bool { return provides(gpu, mesh.KeyGPUPrefix+"a100") >= 2 })
	m.WaitFor(time.Minute, "the framework key provided twice", func() bool { return provides(adherent, mesh.KeyFrameworkPrefix+pub.ID) >= 2 })
	if st := gpu.Status().DHT; st.RoutingTable < 2 {
		t.Fatalf("routing table holds %d peers, want the other two", st.RoutingTable)
	}

	// A fresh peer, bootstrapping from agent 0, finds both.
	id, err := mesh.LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := mesh.New(id, mesh.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: []string{m.Nodes[0].Agent().Node().Addrs()[0]}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Close() })
	finds := func(key, who string) bool {
		ais, _ := fresh.FindProviders(t.Context(), key, 10)
		return slices.ContainsFunc(ais, func(ai peer.AddrInfo) bool { return ai.ID.String() == who })
	}
	m.WaitFor(time.Minute, "the fresh peer to find the GPU provider", func() bool { return finds(mesh.KeyGPUPrefix+"a100", gpu.ID()) })
	m.WaitFor(time.Minute, "the fresh peer to find the framework's adherent", func() bool { return finds(mesh.KeyFrameworkPrefix+pub.ID, adherent.ID()) })
	if finds(mesh.KeyGPUPrefix+"a100", adherent.ID()) {
		t.Fatal("an agent without GPUs is found under the GPU key")
	}
	found, err := adherent.FindKey(t.Context(), mesh.KeyGPUPrefix+"a100", 5)
	if err != nil || len(found) != 1 || found[0].Peer != gpu.ID() {
		t.Fatalf("FindKey: %+v %v", found, err)
	}
}
