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
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// Backend is a test server host listening on several ports. Every
// connection is greeted with the backend's name and a newline; everything
// the client sends after that is echoed back, and the client's FIN is
// answered with a FIN once the echo is done.
type Backend struct {
	Name string
	Host string

	mu    sync.Mutex
	lns   map[int]net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

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
	b := newBackend(name, host)
	t.Cleanup(b.Close)
	return b
}

func newBackend(name, host string) *Backend {
	return &Backend{Name: name, Host: host, lns: map[int]net.Listener{}, conns: map[net.Conn]struct{}{}}
}

func tryStart(hosts []string, n int) ([]*Backend, []int, error) {
	var bs []*Backend
	for i, h := range hosts {
		bs = append(bs, newBackend("cas"+strconv.Itoa(i+1), h))
	}
	var ports []int
	for range n {
		// The first host picks a free port; the others must take the same.
		ln, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
		if err != nil {
			closeAll(bs)
			return nil, nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		bs[0].serve(port, ln)
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

// Listen (re)opens the backend on port.
func (b *Backend) Listen(port int) error {
	_, err := b.ListenPort(port)
	return err
}

// ListenPort listens on port (0: any free one) and returns the port.
func (b *Backend) ListenPort(port int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(b.Host, strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	port = ln.Addr().(*net.TCPAddr).Port
	b.serve(port, ln)
	return port, nil
}

func (b *Backend) serve(port int, ln net.Listener) {
	b.mu.Lock()
	b.lns[port] = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.handle(c)
			}()
		}
	}()
}

func (b *Backend) handle(c net.Conn) {
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	if _, err := io.WriteString(c, b.Name+"\n"); err != nil {
		return
	}
	if err := echo(c); err != nil {
		return
	}
	c.(*net.TCPConn).CloseWrite()
	// Wait for the proxy to close its end.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// echo copies c back to itself until EOF. Small messages go through a
// buffer, so an idle connection holds no splice pipe (tests count the
// proxy's descriptors); a read that fills the buffer moves the rest by
// splice, so bulk benchmarks measure the proxy, not this echo.
func echo(c net.Conn) error {
	buf := make([]byte, 4<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n == len(buf) {
			_, err := io.Copy(c, c)
			return err
		}
	}
}

// StopListening closes the backend's listeners: new connections are
// refused, open ones go on.
func (b *Backend) StopListening() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p, ln := range b.lns {
		ln.Close()
		delete(b.lns, p)
	}
}

// Kill stops listening and resets every open connection, like a server
// that crashed.
func (b *Backend) Kill() {
	b.StopListening()
	b.mu.Lock()
	for c := range b.conns {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	b.mu.Unlock()
}

// Close kills the backend and waits for its goroutines.
func (b *Backend) Close() {
	b.Kill()
	b.wg.Wait()
}

// Dial connects from source address src (a 127.x.y.z address) to dst.
// IP_BIND_ADDRESS_NO_PORT lets the kernel choose the source port at
// connect time, knowing the destination, instead of at bind time, where
// it must search past every port in TIME_WAIT from that address.
func Dial(src string, dst netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return serr
		}}
	c, err := d.Dial("tcp", dst.String())
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
// (127.1.0.1, 127.1.0.2, ...), avoiding .0 and .255 in the last byte.
func ClientIP(i int) string {
	return fmt.Sprintf("127.%d.%d.%d", 1+i/(254*250), (i/254)%250, 1+i%254)
}

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
	for range 200 {
		addr := net.JoinHostPort(host, strconv.Itoa(10000+rand.IntN(10000)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatalf("no port of 10000-19999 on %s free for both TCP and UDP", host)
	return ""
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
