package web_test

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/testnet"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdlePage measures what one open page costs an idle agent: the
// process's CPU over a 15 s window with no page, then with 10 open event
// streams (what an open page holds; each polls on its own), divided by 10.
// The readers run in this process too, so the figure is an upper bound.
// Run it with -benchtime 1x:
//
//	go test ./agent/web -run X -bench IdlePage -benchtime 1x
func BenchmarkIdlePage(b *testing.B) {
	const window, pages = 15 * time.Second, 10
	m := testnet.Start(b, testnet.Options{N: 1, AdvertInterval: 10 * time.Second})
	m.WaitForMesh(30 * time.Second)
	base := m.Nodes[0].Agent().APIURL()
	for range b.N {
		c0 := cpuTime(b)
		time.Sleep(window) // measuring a window of wall time, not waiting for a condition
		idle := cpuTime(b) - c0

		var bodies []io.Closer
		for range pages {
			req, _ := http.NewRequestWithContext(b.Context(), "GET", base+"/web/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			bodies = append(bodies, resp.Body)
			go func() { _, _ = io.Copy(io.Discard, resp.Body) }()
		}
		time.Sleep(2 * time.Second) // let the first full polls pass
		c1 := cpuTime(b)
		time.Sleep(window)
		withPages := cpuTime(b) - c1
		for _, c := range bodies {
			c.Close()
		}

		b.ReportMetric(100*idle.Seconds()/window.Seconds(), "idle-core-%")
		b.ReportMetric(100*(withPages-idle).Seconds()/window.Seconds()/pages, "core-%-per-page")
	}
}
