//go:build linux

package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, lbtest.IgnoreMemberlistProbes()...) }

var casHosts = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// rig is a server in front of real backends, with one listener per
// backend port, all sharing pool cas.
type rig struct {
	t     *testing.T
	srv   *Server
	bs    []*lbtest.Backend
	ports []int
	log   *lbtest.Buffer
}

// addr returns the proxy address of listener i.
func (l *rig) addr(i int) netip.AddrPort { return l.srv.Addrs()[fmt.Sprintf("l%d", i)] }

func (l *rig) backend(name string) *lbtest.Backend {
	for _, b := range l.bs {
		if b.Name == name {
			return b
		}
	}
	l.t.Fatalf("no backend %s", name)
	return nil
}

// listenersTOML writes one listener per port on loopback port 0.
func listenersTOML(ports []int, host string) string {
	var b strings.Builder
	for i, p := range ports {
		fmt.Fprintf(&b, "[listener.l%d]\nlisten = %q\npool = \"cas\"\nbackend_port = %d\n", i, net.JoinHostPort(host, "0"), p)
	}
	return b.String()
}

func backendsTOML(bs []*lbtest.Backend) string {
	var b strings.Builder
	for _, be := range bs {
		fmt.Fprintf(&b, "[pool.cas.backend.%s]\naddress = %q\n", be.Name, be.Host)
	}
	return b.String()
}

// newRig starts nports ports on each backend host and a server whose pool
// section is poolTOML (keys of [pool.cas] and its sub-tables).
func newRig(t *testing.T, nports int, poolTOML string) *rig {
	t.Helper()
	bs, ports := lbtest.StartBackends(t, casHosts, nports)
	src := listenersTOML(ports, "127.0.0.1") + poolTOML + "\n" + backendsTOML(bs)
	l := &rig{t: t, bs: bs, ports: ports, log: &lbtest.Buffer{}}
	l.srv = start(t, src, l.log)
	return l
}

func start(t *testing.T, src string, logs io.Writer) *Server {
	t.Helper()
	srv := launch(t, src, logs)
	if srv == nil {
		t.FailNow()
	}
	return srv
}

// launch is start for any goroutine: it reports a failure with Error and
// returns nil.
func launch(t *testing.T, src string, logs io.Writer) *Server {
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Errorf("config: %v\n%s", err, src)
		return nil
	}
	srv, err := New(cfg, Options{Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Error(err)
		return nil
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

func mustWho(t *testing.T, src string, dst netip.AddrPort) string {
	t.Helper()
	b, err := lbtest.Who(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The heart of the product: a client's connections to every port of the
// pool reach the same backend host, and clients spread over all hosts.
func TestCrossPortAffinity(t *testing.T) {
	l := newRig(t, 3, "[pool.cas.health]\nenabled = false\n")
	perBackend := map[string]int{}
	const clients = 150
	for i := range clients {
		src := lbtest.ClientIP(i)
		first := mustWho(t, src, l.addr(0))
		perBackend[first]++
		for round := range 2 {
			for port := range 3 {
				if got := mustWho(t, src, l.addr(port)); got != first {
					t.Fatalf("client %s: port %d (round %d) reached %s, its first connection %s", src, port, round, got, first)
				}
			}
		}
	}
	for _, b := range l.bs {
		if n := perBackend[b.Name]; n < clients/6 {
			t.Errorf("%s got %d of %d clients: hashing does not spread them", b.Name, n, clients)
		}
	}
	s := l.srv.Table("cas").Stats()
	if s.Pins != clients || s.Hits != clients*6 {
		t.Errorf("table stats %+v: want %d pins and %d hits", s, clients, clients*6)
	}
}

// Many parallel first connections of one client, over all three ports,
// land on one backend even with round-robin, which would spread them if
// the pin were stored only after a successful connect.
func TestParallelFirstConnectionsOneBackend(t *testing.T) {
	l := newRig(t, 3, "[pool.cas]\nbalance = \"round-robin\"\n[pool.cas.health]\nenabled = false\n")
	for c := range 5 {
		src := lbtest.ClientIP(1000 + c)
		const conns = 60
		got := make([]string, conns)
		errs := make(chan error, conns)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				cl, err := lbtest.Connect(src, l.addr(i%3))
				if err != nil {
					errs <- err
					return
				}
				got[i] = cl.Backend
				cl.Close()
			}()
		}
		close(gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != got[0] {
				t.Fatalf("client %s: connection %d on %s, connection 0 on %s", src, i, got[i], got[0])
			}
		}
	}
}

// A pinned backend that refuses: the client is re-pinned and its
// connection succeeds; later connections stay on the new backend.
func TestRefusedBackendRepins(t *testing.T) {
	l := newRig(t, 2, "[pool.cas.health]\nenabled = false\n")
	src := lbtest.ClientIP(7)
	first := mustWho(t, src, l.addr(0))
	l.backend(first).StopListening()
	second := mustWho(t, src, l.addr(1))
	if second == first {
		t.Fatalf("connection reached %s, which refuses", first)
	}
	for range 3 {
		if got := mustWho(t, src, l.addr(0)); got != second {
			t.Fatalf("after re-pin to %s a connection went to %s", second, got)
		}
	}
	if in, _ := l.srv.Table("cas").Lookup(affinity.Keyer{}.Key(netip.MustParseAddrPort(src + ":1"))); in.Backend != second {
		t.Fatalf("pin = %+v, want %s", in, second)
	}
	// The connection's closing line, which carries its decision, is written
	// after the client has read its answer: wait for it.
	for _, want := range []string{"backend connect failed", "reason=refused", "client re-pinned", "from=" + first, "to=" + second, "placement=repin"} {
		lbtest.Eventually(t, 2*time.Second, "a log line with "+want, func() bool {
			return strings.Contains(l.log.String(), want)
		})
	}
}

// A backend dies mid-stream: its client's connection ends at once, the
// client's next connection goes to a live backend, and other clients are
// untouched.
func TestBackendDiesMidStream(t *testing.T) {
	l := newRig(t, 1, "[pool.cas.health]\nenabled = false\n")
	// Find two clients on different backends.
	var victim, bystander *lbtest.Client
	for i := 0; victim == nil || bystander == nil; i++ {
		c, err := lbtest.Connect(lbtest.ClientIP(2000+i), l.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case victim == nil:
			victim = c
		case c.Backend != victim.Backend && bystander == nil:
			bystander = c
		default:
			c.Close()
		}
	}
	defer bystander.Close()
	defer victim.Close()
	l.backend(victim.Backend).Kill()
	victim.SetReadDeadline(time.Now().Add(3 * time.Second))
	// The backend's reset reaches the client as a reset, not a clean EOF
	// that would pass for the end of a reply.
	if _, err := victim.R.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("victim's read after its backend was reset: %v, want ECONNRESET", err)
	}
	// The bystander still echoes.
	if _, err := bystander.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	bystander.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := bystander.R.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("bystander echo = %q, %v", line, err)
	}
	src := victim.LocalAddr().(*net.TCPAddr).IP.String()
	if got := mustWho(t, src, l.addr(0)); got == victim.Backend {
		t.Fatalf("victim reconnected to its dead backend")
	}
}

// With every backend down the client is closed at once and the log says
// why.
func TestAllDownClosesAtOnce(t *testing.T) {
	l := newRig(t, 1, "[pool.cas.health]\ninterval = \"20ms\"\ntimeout = \"100ms\"\nfall = 1\n")
	for _, b := range l.bs {
		b.StopListening()
	}
	lbtest.Eventually(t, 5*time.Second, "all backends down", func() bool {
		for _, b := range l.srv.Pool("cas").Backends() {
			if b.Healthy() {
				return false
			}
		}
		return true
	})
	c, err := lbtest.Dial(lbtest.ClientIP(9), l.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || time.Since(start) > time.Second {
		t.Fatalf("read = %d, %v after %s; want the connection closed at once", n, err, time.Since(start))
	}
	logs := l.log.String()
	if !strings.Contains(logs, "connection refused") || !strings.Contains(logs, "no backend can take the client") {
		t.Errorf("log does not say why the client was closed:\n%s", logs)
	}
	for _, b := range []string{"cas1", "cas2", "cas3"} {
		if !strings.Contains(logs, "backend down") || !strings.Contains(logs, "backend="+b) {
			t.Errorf("no 'backend down' line for %s", b)
		}
	}
}

// Health checks take a dead backend out of the choice for new clients
// and move its pinned clients.
func TestHealthMovesClients(t *testing.T) {
	l := newRig(t, 2, "[pool.cas.health]\ninterval = \"20ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 1\n")
	owner := map[string]string{}
	for i := range 30 {
		src := lbtest.ClientIP(3000 + i)
		owner[src] = mustWho(t, src, l.addr(0))
	}
	dead := owner[lbtest.ClientIP(3000)]
	l.backend(dead).StopListening()
	lbtest.Eventually(t, 5*time.Second, dead+" marked down", func() bool { return !l.srv.Pool("cas").Backend(dead).Healthy() })
	for src, was := range owner {
		got := mustWho(t, src, l.addr(1))
		if got == dead {
			t.Fatalf("client %s sent to down backend %s", src, dead)
		}
		if was != dead && got != was {
			t.Fatalf("client %s of healthy %s moved to %s", src, was, got)
		}
	}
	if s := l.srv.Table("cas").Stats(); s.Repins == 0 {
		t.Errorf("no re-pins counted: %+v", s)
	}
	if !strings.Contains(l.log.String(), "reason=down") {
		t.Errorf("re-pin reason 'down' not logged")
	}
	// Back up: moved clients stay where they are (no split sessions).
	if err := l.backend(dead).Listen(l.ports[0]); err != nil {
		t.Fatal(err)
	}
	if err := l.backend(dead).Listen(l.ports[1]); err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 5*time.Second, dead+" up", func() bool { return l.srv.Pool("cas").Backend(dead).Healthy() })
	for src, was := range owner {
		if was == dead {
			if got := mustWho(t, src, l.addr(0)); got == dead {
				t.Fatalf("client %s failed back to %s: its session would split", src, dead)
			}
		}
	}
}

// on_down = "reject": a pinned client whose backend refuses is closed
// instead of moved; other clients are unaffected.
func TestOnDownReject(t *testing.T) {
	l := newRig(t, 1, "[pool.cas]\non_down = \"reject\"\n[pool.cas.health]\nenabled = false\n")
	src := lbtest.ClientIP(11)
	first := mustWho(t, src, l.addr(0))
	l.backend(first).StopListening()
	if b, err := lbtest.Who(src, l.addr(0)); err == nil {
		t.Fatalf("with on_down=reject the client was sent to %s", b)
	}
	if in, _ := l.srv.Table("cas").Lookup(affinity.Keyer{}.Key(netip.MustParseAddrPort(src + ":1"))); in.Backend != first {
		t.Fatalf("reject moved the pin to %s", in.Backend)
	}
	// Clients of other backends are served; clients of the refusing one
	// are rejected, never moved.
	served := 0
	for i := range 30 {
		b, err := lbtest.Who(lbtest.ClientIP(4000+i), l.addr(0))
		if err == nil {
			served++
			if b == first {
				t.Fatalf("a client reached refusing %s", first)
			}
		}
	}
	if served < 10 {
		t.Fatalf("only %d of 30 clients served with one of three backends refusing", served)
	}
	if !strings.Contains(l.log.String(), "on_down is reject") {
		t.Errorf("the log does not say the client was rejected by on_down")
	}
}

// src-net keys a whole /24 together; connection and none key nothing
// across connections.
func TestAffinityKinds(t *testing.T) {
	t.Run("src-net", func(t *testing.T) {
		l := newRig(t, 1, "[pool.cas.affinity]\nkey = \"src-net\"\nipv4_prefix = 24\n[pool.cas.health]\nenabled = false\n")
		for net := range 20 {
			first := mustWho(t, fmt.Sprintf("127.9.%d.1", net), l.addr(0))
			for host := 2; host < 6; host++ {
				if got := mustWho(t, fmt.Sprintf("127.9.%d.%d", net, host), l.addr(0)); got != first {
					t.Fatalf("127.9.%d.%d reached %s, 127.9.%d.1 %s", net, host, got, net, first)
				}
			}
		}
	})
	for _, kind := range []string{"connection", "none"} {
		t.Run(kind, func(t *testing.T) {
			l := newRig(t, 1, fmt.Sprintf("[pool.cas]\nbalance = \"round-robin\"\n[pool.cas.affinity]\nkey = %q\n[pool.cas.health]\nenabled = false\n", kind))
			seen := map[string]bool{}
			for range 6 {
				seen[mustWho(t, lbtest.ClientIP(15), l.addr(0))] = true
			}
			if len(seen) != 3 {
				t.Fatalf("with key %s and round-robin one client's 6 connections reached %d backends, want 3", kind, len(seen))
			}
			if kind == "none" && l.srv.Table("cas") != nil {
				t.Fatalf("key none keeps a table")
			}
		})
	}
}

// A listener on an IPv6 address serves IPv6 clients like any other
// (skipped where the host has no IPv6 loopback).
func TestIPv6Listener(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here:", err)
	}
	ln.Close()
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	srv := start(t, listenersTOML(ports, "::1")+"[pool.cas.health]\nenabled = false\n"+backendsTOML(bs), io.Discard)
	if _, err := lbtest.Who("::1", srv.Addrs()["l0"]); err != nil {
		t.Fatal(err)
	}
}

// A reload adds and removes listeners and backends, keeps the pins of
// surviving backends and open connections; a bad reload changes nothing.
func TestReload(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 3)
	logs := &lbtest.Buffer{}
	two := "[pool.cas.health]\nenabled = false\n" + backendsTOML(bs[:2])
	srv := start(t, listenersTOML(ports[:2], "127.0.0.1")+two, logs)
	addrs := srv.Addrs()

	owner := map[string]string{}
	for i := range 40 {
		src := lbtest.ClientIP(6000 + i)
		owner[src] = mustWho(t, src, addrs["l0"])
	}
	// An open connection to cas2, which the reload removes.
	var open *lbtest.Client
	for src, b := range owner {
		if b == "cas2" {
			c, err := lbtest.Connect(src, addrs["l1"])
			if err != nil {
				t.Fatal(err)
			}
			open = c
			break
		}
	}
	if open == nil {
		t.Fatal("no client of cas2 among 40")
	}
	defer open.Close()

	// A bad reload: a new listener on a port another socket holds.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := listenersTOML(ports[:2], "127.0.0.1") + fmt.Sprintf("[listener.extra]\nlisten = %q\npool = \"cas\"\nbackend_port = %d\n", busy.Addr(), ports[2]) + two
	cfg, err := config.Parse("bad.toml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Reload(cfg)
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), fmt.Sprint(busy.Addr().(*net.TCPAddr).Port)) {
		t.Fatalf("bad reload error = %v; want it to name the port in use", err)
	}
	if srv.ReloadFailures.Load() != 1 || len(srv.Addrs()) != 2 {
		t.Fatalf("a failed reload changed the listeners: %v", srv.Addrs())
	}

	// The good reload: cas2 out, cas3 in, listener l2 added.
	good := listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n" + backendsTOML([]*lbtest.Backend{bs[0], bs[2]})
	cfg, err = config.Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	addrs2 := srv.Addrs()
	if addrs2["l0"] != addrs["l0"] || addrs2["l1"] != addrs["l1"] {
		t.Fatalf("surviving listeners were re-bound: %v -> %v", addrs, addrs2)
	}
	for src, was := range owner {
		got := mustWho(t, src, addrs2["l2"])
		switch {
		case was == "cas1" && got != "cas1":
			t.Fatalf("client %s of surviving cas1 moved to %s by the reload", src, got)
		case was == "cas2" && got == "cas2":
			t.Fatalf("client %s still sent to removed cas2", src)
		}
	}
	// The connection to the removed backend still works.
	open.Write([]byte("still here\n"))
	open.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := open.R.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("open connection to removed cas2 broke on reload: %q %v", line, err)
	}
	if !strings.Contains(logs.String(), "reason=removed") {
		t.Errorf("no re-pin with reason removed logged")
	}
}

// Shutdown stops accepting, waits for open connections, and cuts them
// only when the drain time runs out.
func TestShutdownDrains(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	cfg, err := config.Parse("t.toml", []byte(listenersTOML(ports, "127.0.0.1")+"[pool.cas.health]\nenabled = false\n"+backendsTOML(bs)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	addr := srv.Addrs()["l0"]
	c, err := lbtest.Connect(lbtest.ClientIP(16), addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	lbtest.Eventually(t, 5*time.Second, "listener closed", func() bool {
		probe, err := lbtest.Dial(lbtest.ClientIP(17), addr)
		if err == nil {
			probe.Close() // accepted before the listener closed
		}
		return err != nil
	})
	// The open connection still works during the drain.
	c.Write([]byte("drain\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := c.R.ReadString('\n'); err != nil || line != "drain\n" {
		t.Fatalf("open connection broke during drain: %q %v", line, err)
	}
	select {
	case <-done:
		t.Fatal("shutdown returned while a connection was open")
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()
	if cut := <-done; cut != 0 {
		t.Fatalf("shutdown cut %d connections that closed by themselves", cut)
	}

	// Now a connection that never closes: cut at the deadline.
	srv2 := func() *Server {
		s, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		return s
	}()
	c2, err := lbtest.Connect(lbtest.ClientIP(18), srv2.Addrs()["l0"])
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if cut := srv2.Shutdown(ctx); cut != 1 {
		t.Fatalf("shutdown at deadline cut %d, want 1", cut)
	}
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c2.R.ReadByte(); err == nil {
		t.Fatal("cut connection still open")
	}
}

// A listener on a port another process holds fails with a message that
// names the port.
func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	src := fmt.Sprintf("[listener.epmap]\nlisten = \"127.0.0.1:%d\"\npool = \"cas\"\n[pool.cas.backend.a]\naddress = \"127.0.0.11\"\n", port)
	cfg, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d", port)) || !strings.Contains(err.Error(), "listener epmap") {
		t.Fatalf("error = %v; want it to name listener epmap and port %d", err, port)
	}
}

// Reloads that add and remove a listener free the removed ones once
// their connections end: nothing accumulates over many reloads.
func TestRetiredListenersFreed(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts[:1], 1)
	base := listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n" + backendsTOML(bs)
	extra := fmt.Sprintf("[listener.extra]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", ports[0])
	srv := start(t, base, &lbtest.Buffer{})
	for i := range 400 {
		src := base
		if i%2 == 0 {
			src += extra
		}
		cfg, err := config.Parse("test.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	srv.mu.Lock()
	n := len(srv.retired)
	srv.mu.Unlock()
	if n > 1 {
		t.Fatalf("%d retired listeners kept after 400 reloads, want at most 1", n)
	}
}

// A listener with proxy_protocol takes the client from the header of a
// trusted balancer: the pin and the log are the header's client's.
func TestProxyProtocolListener(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	src := listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n" + backendsTOML(bs)
	src = strings.Replace(src, "pool = \"cas\"\n", "pool = \"cas\"\nproxy_protocol = true\nproxy_trusted = [\"127.0.0.0/8\"]\n", 1)
	var log lbtest.Buffer
	srv := start(t, src, &log)
	c, err := lbtest.Dial(lbtest.ClientIP(7700), srv.Addrs()["l0"])
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("PROXY TCP4 10.66.0.1 10.0.0.1 40000 135\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := srv.Table("cas").Lookup(affinity.Keyer{}.Key(netip.MustParseAddrPort("10.66.0.1:1"))); err != nil {
		t.Fatalf("no pin for the header's client: %v", err)
	}
	lbtest.Eventually(t, 3*time.Second, "closed line", func() bool { return strings.Contains(log.String(), "client=10.66.0.1:40000") })
}

// max_pins_per_prefix counts by the limits' prefix, over real
// connections: with limits.ipv4_prefix = 24 and a bound of 3, a /24's
// fourth new client goes unpinned (counted, logged) and another /24's
// client pins, and a reload raising the bound lets the /24 pin again.
func TestPinsPerPrefixOverConnections(t *testing.T) {
	pool := "[pool.cas.affinity]\nmax_pins_per_prefix = 3\n[pool.cas.limits]\nipv4_prefix = 24\n[pool.cas.health]\nenabled = false\n"
	l := newRig(t, 1, pool)
	for host := 1; host <= 6; host++ {
		mustWho(t, fmt.Sprintf("127.9.40.%d", host), l.addr(0))
	}
	mustWho(t, "127.9.41.1", l.addr(0))
	st := l.srv.Table("cas").Stats()
	if st.Pins != 4 || st.PrefixFull != 3 {
		t.Fatalf("stats %+v; want 4 pins (3 of 127.9.40.0/24, 1 of 127.9.41.0/24) and 3 clients unpinned for the bound", st)
	}
	if !strings.Contains(l.log.String(), "max_pins_per_prefix") {
		t.Fatal("the unpinned clients were not logged")
	}
	src := strings.Replace(listenersTOML(l.ports, "127.0.0.1")+pool+"\n"+backendsTOML(l.bs), "max_pins_per_prefix = 3", "max_pins_per_prefix = 4", 1)
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	mustWho(t, "127.9.40.7", l.addr(0))
	if st := l.srv.Table("cas").Stats(); st.Pins != 5 {
		t.Fatalf("after raising the bound to 4, %d pins; want 5", st.Pins)
	}
}
