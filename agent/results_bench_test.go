package agent_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/testnet"
)

// benchBytes is the result size: 1 GiB, or PCM_BENCH_BYTES.
func benchBytes(b *testing.B) int64 {
	if s := os.Getenv("PCM_BENCH_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("PCM_BENCH_BYTES=%q: want a positive number of bytes", s)
		}
		return n
	}
	return 1 << 30
}

// Must-show 5: results transfer throughput between two agents on
// loopback (C fetches from B over /pcm/results/1.0.0, digest checked,
// written to C's store), next to a plain TCP copy of the same archive
// over loopback (file → socket → file) and `cp` of it on the same disk,
// measured in the same run. Run with
//
//	go test ./agent -run '^$' -bench BenchmarkResultsTransfer -benchtime 1x
//
// and read results-MB/s, tcp-MB/s and cp-MB/s (PCM_BENCH_BYTES=N for
// another size).
//
// Two meshes: agents listening on TCP and QUIC (the default; libp2p picks
// QUIC between them on loopback) and agents listening on TCP only.
func BenchmarkResultsTransfer(b *testing.B) {
	b.Run("listen=tcp+quic", func(b *testing.B) {
		benchTransfer(b, []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"})
	})
	b.Run("listen=tcp", func(b *testing.B) { benchTransfer(b, []string{"/ip4/127.0.0.1/tcp/0"}) })
}

func benchTransfer(b *testing.B, listen []string) {
	size := benchBytes(b)
	m := testnet.Start(b, testnet.Options{N: 3, Topology: testnet.Star, Configure: func(_ int, c *agent.Config) {
		c.Results.MaxOutputBytes = 2 * size
		c.MinFreeMB = 1
		c.Listen = listen
	}})
	m.WaitForMesh(30 * time.Second)
	a, p, c := m.Nodes[0].Agent(), m.Nodes[1].Agent(), m.Nodes[2].Agent()
	doc := fmt.Sprintf("name: bench\nresources: {cpu: 0.5, memory: 64Mi}\ndriver: local\nconstraints: ['provider.id == %q']\nscript: head -c %d /dev/urandom > big.bin\noutputs: {paths: [big.bin]}\n", p.ID(), size)
	tk := submitVia(b, c, a, doc) // C, the submitter, may fetch
	deadline := time.Now().Add(10 * time.Minute)
	for {
		t, err := a.TaskStatus(b.Context(), tk.ID)
		if err == nil && (t.State == agent.StateSucceeded || t.State == agent.StateFailed) {
			if t.State != agent.StateSucceeded {
				b.Fatalf("bench task %s: %s", t.State, t.Message)
			}
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("bench task did not end")
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.WaitFor(10*time.Minute, "the broker's copy", func() bool { return len(a.HeldResults()) == 1 })
	// C fetches from B alone: the broker stops serving (its copy is
	// dropped) so both runs read from the provider.
	src := p.HeldResults()[0]
	a.DropResults(src.Digest)
	archivePath := filepath.Join(m.Nodes[1].Dir, "results", src.Digest[len("sha256:"):]+".tar")

	var fetchT, tcpT, cpT time.Duration
	b.SetBytes(src.Size)
	b.ResetTimer()
	for range b.N {
		c.DropResults(src.Digest)
		start := time.Now()
		if _, _, err := c.FetchResults(b.Context(), tk.ID, nil); err != nil {
			b.Fatal(err)
		}
		fetchT += time.Since(start)

		dst := filepath.Join(b.TempDir(), "tcp.tar")
		start = time.Now()
		tcpCopy(b, archivePath, dst)
		tcpT += time.Since(start)
		os.Remove(dst)

		dst = filepath.Join(b.TempDir(), "cp.tar")
		start = time.Now()
		if out, err := exec.Command("cp", archivePath, dst).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v: %s", err, out)
		}
		cpT += time.Since(start)
		os.Remove(dst)
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(src.Size) * float64(b.N) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(fetchT), "results-MB/s")
	b.ReportMetric(mbps(tcpT), "tcp-MB/s")
	b.ReportMetric(mbps(cpT), "cp-MB/s")
	b.Logf("%d MiB archive, agents listening on %v: results stream %.0f MB/s, plain TCP %.0f MB/s, cp %.0f MB/s", src.Size>>20, listen, mbps(fetchT), mbps(tcpT), mbps(cpT))
}

// tcpCopy sends a file over a loopback TCP connection into dst.
func tcpCopy(b *testing.B, src, dst string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		f, err := os.Open(src)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = io.Copy(conn, f)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, conn); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	out.Close()
}
