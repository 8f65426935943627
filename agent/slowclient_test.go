package agent_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pcm-mesh/pcm/agent"
	"github.com/pcm-mesh/pcm/testnet"
)

// TestAPICutsSlowClients: 1,000 connections that send their headers or
// bodies a byte at a time (slowloris) are all cut by the API's read
// timeout, and the API keeps answering others meanwhile.
func TestAPICutsSlowClients(t *testing.T) {
	const conns = 1000
	m := testnet.Start(t, testnet.Options{N: 1, Configure: func(_ int, cfg *agent.Config) {
		cfg.APITimeouts.Read = 2 * time.Second
	}})
	base := m.Nodes[0].Agent().APIURL()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var cut, open atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer close(stop)
	for i := range conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open.Add(1)
		// Half send a whole header and a body that never completes, half
		// never finish their header.
		head := "POST /v1/tasks HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n\r\n"
		if i%2 == 1 {
			head = "GET /v1/status HTTP/1.1\r\nHost: " + u.Host + "\r\n"
		}
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		wg.Add(2)
		go func() { // dribble a byte every 200 ms until the server cuts
			defer wg.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
		go func() { // the server closing the connection ends this read
			defer wg.Done()
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // never cut: counted as still open
			}
			cut.Add(1)
			open.Add(-1)
		}()
	}
	// Others are still served while the slow ones hang on.
	resp, err := http.Get(base + "/v1/status")
	if err != nil {
		t.Fatalf("GET /v1/status during the attack: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status during the attack: %d", resp.StatusCode)
	}
	m.WaitFor(3*time.Minute, fmt.Sprintf("all %d slow connections cut", conns), func() bool { return cut.Load() == conns })
	t.Logf("%d slow connections cut, %d open; fds in use: %d", cut.Load(), open.Load(), countFDs())
}

func countFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}
