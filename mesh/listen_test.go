package mesh

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A node refuses to start on a port another process holds, whether that
// process set SO_REUSEPORT (an older agent: the kernel would let both
// listen and split the dials) or not, and whether the whole address or
// only its TCP half is taken; the error names the address.
func TestStartRefusesATakenPort(t *testing.T) {
	reuse := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	for _, tc := range []struct {
		name   string
		listen func() (net.Listener, error)
	}{
		{"plain", func() (net.Listener, error) { return net.Listen("tcp4", "127.0.0.1:0") }},
		{"reuseport", func() (net.Listener, error) { return reuse.Listen(t.Context(), "tcp4", "127.0.0.1:0") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.listen()
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			// TCP and QUIC on the port: QUIC binds (UDP is free), TCP must not.
			addrs := ListenAddrs("127.0.0.1", port)
			id, err := GenerateIdentity()
			if err != nil {
				t.Fatal(err)
			}
			n, err := New(id, Config{Listen: addrs, DisableDHT: true, AdvertInterval: time.Second}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			err = n.Start(t.Context())
			want := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
			if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "in use") {
				t.Fatalf("start on a taken port: err = %v, want ErrListen naming %s and 'in use'", err, want)
			}
		})
	}
}

// Two nodes on one port: the second is refused (no SO_REUSEPORT sharing).
func TestSecondNodeOnSamePortRefused(t *testing.T) {
	a := startNode(t, nil, nil)
	var tcp string
	for _, addr := range a.Addrs() {
		if strings.Contains(addr, "/tcp/") {
			tcp = addr[:strings.Index(addr, "/p2p/")]
		}
	}
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(id, Config{Listen: []string{tcp}, DisableDHT: true, AdvertInterval: time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(t.Context()); !errors.Is(err, ErrListen) {
		t.Fatalf("second node on %s: err = %v, want ErrListen", tcp, err)
	}
}
