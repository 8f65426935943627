package mesh

import (
	"fmt"
	"net"
	"strings"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// checkListening makes sure the host listens on every requested address.
// libp2p starts as long as one address binds, so a taken TCP port next to
// a free QUIC one would go unnoticed: this names the address instead.
func checkListening(got []ma.Multiaddr, want []string) error {
	for _, w := range want {
		if !listensOn(got, w) {
			reason, _ := bindError(w)
			return fmt.Errorf("%w: %s: %s", ErrListen, w, reason)
		}
	}
	return nil
}

// checkBindable names the first address of want that cannot be bound.
func checkBindable(want []string) error {
	for _, w := range want {
		if reason, ok := bindError(w); !ok {
			return fmt.Errorf("%w: %s: %s", ErrListen, w, reason)
		}
	}
	return nil
}

// listensOn reports whether one of got is want, where a port 0 in want
// matches any port.
func listensOn(got []ma.Multiaddr, want string) bool {
	wp := strings.Split(want, "/")
	for _, g := range got {
		gp := strings.Split(g.String(), "/")
		if len(gp) < len(wp) {
			continue
		}
		ok := true
		for i := range wp {
			isPort := i > 0 && (wp[i-1] == "tcp" || wp[i-1] == "udp")
			if wp[i] != gp[i] && !(isPort && wp[i] == "0") {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// bindError tries the bind itself to report why it failed (typically
// "address already in use": another agent or program holds the port); ok
// is true when the bind succeeds now.
func bindError(addr string) (reason string, ok bool) {
	const fix = "stop the process that holds it (`ss -ltnup` shows which) or choose another --listen port"
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return err.Error(), false
	}
	network, hostport, err := manet.DialArgs(m)
	if err != nil {
		return "the address could not be bound; " + fix, false
	}
	if strings.HasPrefix(network, "udp") {
		c, err := net.ListenPacket(network, hostport)
		if err != nil {
			return err.Error() + "; " + fix, false
		}
		c.Close()
	} else {
		l, err := net.Listen(network, hostport)
		if err != nil {
			return err.Error() + "; " + fix, false
		}
		l.Close()
	}
	return "the address could not be bound (it is free now: retry); " + fix, true
}
