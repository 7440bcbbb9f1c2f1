//go:build linux

// Package lbtest gives tests real servers and clients on loopback: backend
// hosts on 127.0.0.x that say who they are, and clients bound to any
// 127.x.y.z source address so one machine plays many client hosts.
//
// It is the kit's test fixture and builds on Linux only: its clients bind
// with IP_BIND_ADDRESS_NO_PORT.
package lbtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/kit/loop"
)

// Backend is a loopback backend host (package loop) that tests start.
type Backend = loop.Backend

// StartBackends starts one backend per host (names cas1, cas2, ...), all
// listening on the same n ports, and returns them with the ports.
func StartBackends(t testing.TB, hosts []string, n int) ([]*Backend, []int) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		bs, ports, err := tryStart(hosts, n)
		if err == nil {
			for _, b := range bs {
				t.Cleanup(b.Close)
			}
			return bs, ports
		}
	}
	t.Fatalf("could not find %d ports free on all of %v", n, hosts)
	return nil, nil
}

// NewBackend makes a backend that listens nowhere yet (see Listen), for
// tests that place backends in different network namespaces. It is
// closed when the test ends.
func NewBackend(t testing.TB, name, host string) *Backend {
	b := loop.NewBackend(name, host)
	t.Cleanup(b.Close)
	return b
}

func tryStart(hosts []string, n int) ([]*Backend, []int, error) {
	var bs []*Backend
	for i, h := range hosts {
		bs = append(bs, loop.NewBackend("cas"+strconv.Itoa(i+1), h))
	}
	var ports []int
	for range n {
		// The first host picks a free port; the others must take the same.
		port, err := bs[0].ListenPort(0)
		if err != nil {
			closeAll(bs)
			return nil, nil, err
		}
		for _, b := range bs[1:] {
			if err := b.Listen(port); err != nil {
				closeAll(bs)
				return nil, nil, err
			}
		}
		ports = append(ports, port)
	}
	return bs, ports, nil
}

func closeAll(bs []*Backend) {
	for _, b := range bs {
		b.Close()
	}
}

// Dial connects from source address src (a 127.x.y.z address) to dst.
// IP_BIND_ADDRESS_NO_PORT lets the kernel choose the source port at
// connect time, knowing the destination, instead of at bind time, where
// it must search past every port in TIME_WAIT from that address.
func Dial(src string, dst netip.AddrPort) (*net.TCPConn, error) {
	c, err := loop.Dialer(src, 5*time.Second).Dial("tcp", dst.String())
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", dst, src, err)
	}
	return c.(*net.TCPConn), nil
}

// Client is a connection to a test Backend through the proxy.
type Client struct {
	*net.TCPConn
	R       *bufio.Reader
	Backend string // the name the backend greeted with
}

// Connect dials dst from src and reads the backend's greeting.
func Connect(src string, dst netip.AddrPort) (*Client, error) {
	c, err := Dial(src, dst)
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read greeting from %s via %s: %w", src, dst, err)
	}
	c.SetReadDeadline(time.Time{})
	return &Client{TCPConn: c, R: r, Backend: line[:len(line)-1]}, nil
}

// Who connects from src to dst, returns the backend that answered and
// closes the connection.
func Who(src string, dst netip.AddrPort) (string, error) {
	c, err := Connect(src, dst)
	if err != nil {
		return "", err
	}
	c.Close()
	return c.Backend, nil
}

// ClientIP returns a distinct loopback source address for client i
// (127.1.0.1, 127.1.0.2, ...; loop.SourceIP).
func ClientIP(i int) string { return loop.SourceIP(1, i) }

// Eventually polls cond every 10ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreeAddr returns host:port with a port free on host for both TCP and
// UDP now, for what binds both, such as a cluster member. The port is
// taken from 10000-19999, below Linux's ephemeral range: a port the kernel
// hands out at random (to a listener on port 0, or an outgoing
// connection) could otherwise be taken between a member's stop and its
// restart, as CI once saw. The lab and bench rigs use 20000 and up.
func FreeAddr(t testing.TB, host string) string {
	t.Helper()
	p, err := loop.FreePort(host, 200, func() int { return rand.IntN(10000) })
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// Chromium returns the path of a headless-capable Chromium, or skips the
// test saying how to get one.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium installed (.ci/run installs Debian's)")
	return ""
}

// Headless runs Chromium on url, with the flags a closed network needs
// and a 4 s virtual time budget for the page's scripts, and returns what
// it printed (the DOM with --dump-dom).
func Headless(t testing.TB, bin, url string, extra ...string) []byte {
	t.Helper()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=4000"}, extra...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return out
}

// IgnoreMemberlistProbes are goleak options for packages whose tests run
// cluster members: memberlist's Shutdown does not wait for a failure probe
// in flight, which ends by itself within its timeout (about a second) and
// touches nothing of ours.
func IgnoreMemberlistProbes() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).sendPingAndWaitForAck"),
	}
}

// Buffer is a bytes.Buffer that a process or logger writes on other
// goroutines while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is what was written so far.
func (l *Buffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// BuildBinary builds the command in pkg (a path as go build takes it)
// into a folder of its own, readable by every user (some tests run the
// binary as users of their own), and returns it and what removes it. A
// failed build ends the test binary: no test can run without it.
func BuildBinary(pkg string) (string, func()) {
	dir, err := os.MkdirTemp("", "stickylb-bin")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "a folder for the stickylb binary:", err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "stickylb")
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build stickylb: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	return bin, func() { os.RemoveAll(dir) }
}

// LeakCheck is a TestMain's exit code with goleak's verdict: code, or 1
// when the tests passed but left goroutines behind.
func LeakCheck(code int) int {
	if code != 0 {
		return code
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return 0
}
