package testnet

import (
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// TestDeadlineHost: over mocknet, a read past its deadline ends (it
// would block forever on a bare mocknet stream), and a stream whose
// deadline passed while idle still works with a new deadline.
func TestDeadlineHost(t *testing.T) {
	mn, err := mocknet.FullMeshConnected(2)
	if err != nil {
		t.Fatal(err)
	}
	defer mn.Close()
	a, b := deadlineHost{mn.Hosts()[0]}, deadlineHost{mn.Hosts()[1]}
	got := make(chan []byte, 1)
	b.SetStreamHandler("/echo", func(s network.Stream) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err == nil {
			got <- buf
			_, _ = s.Write(buf)
		}
	})
	s, err := a.NewStream(t.Context(), b.ID(), "/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Idle past a deadline, then use the stream with a fresh one.
	_ = s.SetDeadline(time.Now().Add(20 * time.Millisecond))
	time.Sleep(50 * time.Millisecond)
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatalf("write after an idle deadline passed: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	<-got

	// Nothing more comes: the read must end at its deadline.
	_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read past its deadline returned data")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked 5 s after its 50 ms deadline")
	}
	// And a read begun after the deadline fails at once.
	if _, err := s.Read(buf); err == nil {
		t.Fatal("read begun after the deadline returned data")
	}
}
