//go:build linux

package steer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// attach listens on addr's first port and steers the rest of ports to
// it, skipping the test where this process may not use sk_lookup.
func attach(t *testing.T, addr netip.Addr, ports config.Ports) *net.TCPListener {
	t.Helper()
	ln, err := Listen(context.Background(), netip.AddrPortFrom(addr, ports[0].First), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s, err := Attach(ln, addr, ports)
	if errors.Is(err, ErrNotAllowed) {
		t.Skipf("sk_lookup cannot be used here (run as root on Linux 5.9+): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ln
}

// dial connects to host:port and, when accepted, returns the port the
// accepted socket says the client dialled.
func dial(t *testing.T, ln *net.TCPListener, host string, port int) (int, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ln.SetDeadline(time.Now().Add(2 * time.Second))
	a, err := ln.AcceptTCP()
	if err != nil {
		return 0, err
	}
	defer a.Close()
	return a.LocalAddr().(*net.TCPAddr).Port, nil
}

// Connections to any port of the ranges, on the steered address only,
// reach the one socket, which sees the port the client dialled.
func TestSteersRangesToOneSocket(t *testing.T) {
	addr := netip.MustParseAddr("127.0.0.77")
	ports := config.Ports{{First: 21500, Last: 21599}, {First: 21700, Last: 21700}}
	ln := attach(t, addr, ports)
	for _, p := range []int{21500, 21517, 21599, 21700} {
		got, err := dial(t, ln, "127.0.0.77", p)
		if err != nil || got != p {
			t.Fatalf("port %d: accepted on %d, %v", p, got, err)
		}
	}
	for _, p := range []int{21499, 21600, 21699, 21701} {
		if _, err := net.DialTimeout("tcp", "127.0.0.77:"+strconv.Itoa(p), time.Second); err == nil {
			t.Fatalf("port %d outside the ranges was accepted", p)
		}
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.78:21517", time.Second); err == nil {
		t.Fatal("another address was steered too")
	}
}

// A wildcard listener takes the ports on every address; closing the
// Steer gives them back to the kernel's own lookup. The ports are below
// those every other test uses (free-port picks from 10000, the lab from
// 20000, the kernel's from 32768), since a wildcard steers them on every
// address while it runs.
func TestWildcardAndClose(t *testing.T) {
	ln, err := Listen(context.Background(), netip.AddrPortFrom(netip.IPv6Unspecified(), 9800), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := Attach(ln, netip.IPv6Unspecified(), config.Ports{{First: 9800, Last: 9810}})
	if errors.Is(err, ErrNotAllowed) {
		t.Skipf("sk_lookup cannot be used here (run as root on Linux 5.9+): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "127.9.8.7", "::1"} {
		if got, err := dial(t, ln, host, 9805); err != nil || got != 9805 {
			t.Fatalf("%s: accepted on %d, %v", host, got, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:9805", time.Second); err == nil {
		t.Fatal("still steered after Close")
	}
}
