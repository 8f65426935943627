package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// --debug-pprof serves the runtime profiles on loopback only.
func TestStartPprof(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:0", "example.com:0", "6060"} {
		if _, stop, err := startPprof(addr, log); err == nil {
			stop()
			t.Errorf("startPprof(%q) served; want a loopback-only error", addr)
		}
	}
	bound, stop, err := startPprof("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	resp, err := http.Get("http://" + bound + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("GET goroutine profile: %s\n%.200s", resp.Status, body)
	}
}
