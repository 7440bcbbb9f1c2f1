//go:build linux

package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/throttle"
)

// oneShot is a backend that greets and then does what act says with the
// connection.
func oneShot(t *testing.T, host string, act func(net.Conn)) int {
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); c.Write([]byte("x\n")); act(c) })
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// Every way a connection can end is told apart, as the closing line's
// termination and the metric's label.
func TestTerminations(t *testing.T) {
	obs := &recorder{}
	withRoute := func(host string, port int, tweak func(*Route)) (*Listener, *Route) {
		r := route(nil, port, nil)
		r.Pool = pool.New("p", 0, []pool.Spec{{Name: "b", Host: host, Weight: 1}})
		r.Observer = obs.observer()
		if tweak != nil {
			tweak(r)
		}
		return serve(t, r), r
	}
	dial := func(l *Listener) *lbtest.Client {
		c, err := lbtest.Connect(lbtest.ClientIP(9950), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	echo := oneShot(t, "127.0.0.15", func(c net.Conn) { io.Copy(c, c) })
	l, _ := withRoute("127.0.0.15", echo, nil)
	c := dial(l)
	c.CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	obs.last(t, EndClientClosed)

	c = dial(l)
	c.SetLinger(0)
	c.Close()
	obs.last(t, EndClientReset)

	closer := oneShot(t, "127.0.0.16", func(c net.Conn) {})
	l2, _ := withRoute("127.0.0.16", closer, nil)
	c = dial(l2)
	io.Copy(io.Discard, c)
	c.Close()
	obs.last(t, EndBackendClosed)

	// The backend resets only once its greeting has reached the client,
	// so the proxy is copying, not still setting the connection up.
	greeted := make(chan struct{})
	resetter := oneShot(t, "127.0.0.17", func(c net.Conn) { <-greeted; c.(*net.TCPConn).SetLinger(0) })
	greet := sync.OnceFunc(func() { close(greeted) })
	t.Cleanup(greet) // before oneShot's clean-up waits for it
	l3, _ := withRoute("127.0.0.17", resetter, nil)
	c = dial(l3) // reads the greeting
	greet()
	io.Copy(io.Discard, c)
	c.Close()
	obs.last(t, EndBackendReset)

	// The backend holds its side open until the test ends, so only the
	// half-close timeout can end the connection, however late it fires.
	release := make(chan struct{})
	hold := oneShot(t, "127.0.0.18", func(c net.Conn) { io.Copy(io.Discard, c); <-release })
	t.Cleanup(func() { close(release) }) // before oneShot's clean-up waits for it
	l4, _ := withRoute("127.0.0.18", hold, func(r *Route) { r.HalfCloseTimeout = 200 * time.Millisecond })
	c = dial(l4)
	c.CloseWrite()
	obs.last(t, EndHalfCloseTimeout)
	c.Close()

	l5, _ := withRoute("127.0.0.15", echo, func(r *Route) { r.IdleTimeout = 200 * time.Millisecond })
	c = dial(l5)
	obs.last(t, EndIdleTimeout)
	c.Close()

	l6, r6 := withRoute("127.0.0.15", echo, nil)
	c = dial(l6)
	lbtest.Eventually(t, 10*time.Second, "open", func() bool { return l6.Active() == 1 })
	l6.CloseBackend(r6.Pool.Backend("b"), EndCutBackendDown)
	obs.last(t, EndCutBackendDown)
	c.Close()

	l7, _ := withRoute("127.0.0.15", echo, nil)
	c = dial(l7)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	l7.Close()
	l7.Wait(ctx)
	cancel()
	obs.last(t, EndCutShutdown)
	c.Close()

	refusing, err := net.Listen("tcp", "127.0.0.19:0")
	if err != nil {
		t.Fatal(err)
	}
	port := refusing.Addr().(*net.TCPAddr).Port
	refusing.Close()
	l8, _ := withRoute("127.0.0.19", port, func(r *Route) { r.Retries = 0 })
	if _, err := lbtest.Connect(lbtest.ClientIP(9951), l8.Addr()); err == nil {
		t.Fatal("a client reached a backend that refuses")
	}
	obs.last(t, EndConnectFailed)

	l9, r9 := withRoute("127.0.0.15", echo, nil)
	r9.Pool.Backend("b").SetHealthy(false)
	if _, err := lbtest.Connect(lbtest.ClientIP(9952), l9.Addr()); err == nil {
		t.Fatal("a client got a backend that is down")
	}
	obs.last(t, EndRefused)
}

// Refusals come in floods (every backend in maintenance refuses every
// client), so they are logged at most every few seconds per reason, with
// the count of refusals the line stands for: 200 refused connects give
// one line, not 200. However slow the machine, the lines' counts add up
// to every refusal, and there is at most one line per period the flood
// took besides the first; when the flood fits in one period (as it does
// but on a machine far too busy) that is exactly one line for the 200.
func TestRefusalsLoggedWithCount(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	var log syncBuf
	r := route(bs, ports[0], nil)
	r.Pool.Backend("cas1").SetAdminState(pool.Maint)
	l := serveLogged(t, r, &log)
	period := 2 * time.Second
	l.refuseLogs.Store(RefusedNoBackend, &throttle.Log{Period: period})
	// refuse returns once the proxy has closed the client, which it does
	// after logging (or holding back) the refusal.
	refuse := func(i int) {
		c, err := lbtest.Dial(lbtest.ClientIP(i), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("refused client: read %v, want EOF", err)
		}
		c.Close()
	}
	start := time.Now()
	for i := range 200 {
		refuse(i)
	}
	flood := time.Since(start)
	time.Sleep(period) // a clock wait, not an ordering one: the period since the last line ends
	refuse(200)
	var counts []int
	for _, m := range regexp.MustCompile(`msg="connection refused" .* count=(\d+) `).FindAllStringSubmatch(log.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		counts = append(counts, n)
	}
	sum := 0
	for _, n := range counts {
		sum += n
	}
	most := 2 + int(flood/period) // the first, one per period of the flood, the one after the pause
	switch {
	case sum != 201:
		t.Fatalf("201 refusals gave lines counting %v (%d in all):\n%.3000s", counts, sum, log.String())
	case len(counts) > most:
		t.Fatalf("a flood of 200 refusals in %s gave %d log lines with a %s period (at most %d):\n%.3000s", flood, len(counts), period, most, log.String())
	case flood < period && (len(counts) != 2 || counts[0] != 1 || counts[1] != 200):
		t.Fatalf("200 refusals in %s gave lines counting %v; want one for the first and one for the other 199 and the 201st", flood, counts)
	case len(counts) < 2 || counts[len(counts)-1] == 0:
		t.Fatalf("no line after the period: %v", counts)
	}
}

// A connection accepted in the very moment the listener closes is still
// one Wait waits for: Wait returns only after the accept loops have
// stopped, so no connection is left open behind it (before, one could
// be added to the count after Wait saw it at zero: the race detector's
// "Add concurrent with Wait", and a connection the drain never cut).
func TestWaitCoversConnectionsAcceptedAtClose(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.16"}, 1)
	for i := range 30 {
		r := route(bs, ports[0], nil)
		l, err := Listen(context.Background(), &config.Listener{Name: "test", Listen: "127.0.0.1:0", RangeMode: config.RangeAuto}, 30*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		l.SetRoute(r)
		served := make(chan struct{})
		go func() { l.Serve(); close(served) }()
		var clients sync.WaitGroup
		for j := range 8 {
			clients.Go(func() {
				if c, err := lbtest.Dial(lbtest.ClientIP(9000+j), l.Addr()); err == nil {
					defer c.Close()
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					c.Read(make([]byte, 1))
				}
			})
		}
		time.Sleep(time.Duration(i%5) * time.Millisecond) // close at different points of the dials
		l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		l.Wait(ctx)
		cancel()
		if n := l.Active(); n != 0 {
			t.Fatalf("round %d: %d connections open after Wait returned", i, n)
		}
		<-served
		clients.Wait()
	}
}
