//go:build linux

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// holdingDialer dials as NetDialer does, but holds the set-up of one
// client's connection after its dial until release is closed: a
// connection whose backend leg is open and whose copy has not started.
type holdingDialer struct {
	NetDialer
	hold    netip.Addr
	held    chan struct{} // closed once the held client's dial is done
	release chan struct{}
}

func (d *holdingDialer) Dial(ctx context.Context, client netip.AddrPort, addr string) (net.Conn, error) {
	c, err := d.NetDialer.Dial(ctx, client, addr)
	if client.Addr() == d.hold {
		close(d.held)
		select {
		case <-d.release:
		case <-time.After(10 * time.Second):
		}
	}
	return c, err
}

// Every accepted connection is told ended once, and every one that
// reached its backend writes one closing line, however it ended: closed
// by its client, refused by a client limit, closed by an operator, or
// cut by a shutdown between its dial and its copy. That last one was
// never told ended before (connections_ended_total fell behind
// connections_accepted_total by one for each).
func TestEveryConnectionEndsOnce(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	held := lbtest.ClientIP(9700)
	d := &holdingDialer{hold: netip.MustParseAddr(held), held: make(chan struct{}), release: make(chan struct{})}
	r := route(bs, ports[0], d)
	r.Limits = NewLimiter(ClientLimits{MaxConnsPerClient: 1})
	obs := &recorder{}
	r.Observer = obs.observer()
	var log lbtest.Buffer
	l := serveLogged(t, r, &log)

	const closers = 20
	for i := range closers {
		c, err := lbtest.Connect(lbtest.ClientIP(9710+i), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	first, err := lbtest.Connect(lbtest.ClientIP(9701), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := lbtest.Dial(lbtest.ClientIP(9701), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	waitClosed(t, second, "the client over its limit")
	if n := l.CloseConns(func(in ConnInfo) bool { return in.Client.Addr() == first.LocalAddr().(*net.TCPAddr).AddrPort().Addr() }); n != 1 {
		t.Fatalf("the operator closed %d connections, want 1", n)
	}
	waitClosed(t, first.TCPConn, "the connection the operator closed")

	hc, err := lbtest.Dial(held, l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	select {
	case <-d.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held client was never dialled")
	}
	// The earlier connections end on their own goroutines: a shutdown
	// begun before they finish would cut them too.
	lbtest.Eventually(t, 10*time.Second, "every earlier connection told ended", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.got) == closers+2
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cut := make(chan int)
	go func() { cut <- l.Wait(ctx) }()
	waitClosed(t, hc, "the connection the shutdown cut")
	close(d.release)
	select {
	case n := <-cut:
		if n != 1 {
			t.Fatalf("the shutdown cut %d connections, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cut connection never ended")
	}

	// Wait has returned: every connection has finished.
	obs.mu.Lock()
	accepted, got := obs.accepted, append([]Termination(nil), obs.got...)
	obs.mu.Unlock()
	count := map[Termination]int{}
	for _, end := range got {
		count[end]++
	}
	want := map[Termination]int{EndClientClosed: closers, EndRefused: 1, EndCutOperator: 1, EndCutShutdown: 1}
	if accepted != closers+3 || len(got) != accepted || len(count) != len(want) {
		t.Fatalf("%d accepted, %d told ended: %v, want %v", accepted, len(got), count, want)
	}
	for end, n := range want {
		if count[end] != n {
			t.Fatalf("told ended %v, want %v", count, want)
		}
	}
	lines := closingLines.FindAllStringSubmatch(log.String(), -1)
	perClient := map[string]int{}
	for _, m := range lines {
		perClient[m[1]]++
	}
	for i := range closers + 1 {
		ip := lbtest.ClientIP(9710 + i)
		if i == closers {
			ip = lbtest.ClientIP(9701)
		}
		if perClient[ip] != 1 {
			t.Errorf("client %s has %d closing lines, want 1", ip, perClient[ip])
		}
	}
	if len(lines) != closers+1 || perClient[held] != 0 {
		t.Fatalf("%d closing lines (%d of the connection cut before its copy), want %d:\n%s", len(lines), perClient[held], closers+1, log.String())
	}
}

var closingLines = regexp.MustCompile(`msg="connection closed" listener=\S+ client=([0-9.]+):\d+ `)

// waitClosed waits for the proxy to close c.
func waitClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: %v, want EOF", what, err)
	}
}
