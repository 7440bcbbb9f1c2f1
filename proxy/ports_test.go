//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/steer"
)

// A listener of a port range forwards each connection to the port its
// client dialled on the client's pinned backend, and every port of the
// range shares the one affinity table; this holds with a socket per port
// and with one socket steered by sk_lookup alike.
func TestRangeForwardsDialledPort(t *testing.T) {
	for _, mode := range []config.RangeMode{config.RangePerPort, config.RangeSkLookup} {
		t.Run(mode.String(), func(t *testing.T) {
			var bs []*lbtest.Backend
			for i, host := range []string{"127.0.0.31", "127.0.0.32", "127.0.0.33"} {
				b := lbtest.NewBackend(t, "cas"+string(rune('1'+i)), host)
				for _, port := range []int{23010, 23050} {
					if err := b.Listen(port); err != nil {
						t.Fatal(err)
					}
				}
				bs = append(bs, b)
			}
			l, err := Listen(context.Background(), &config.Listener{Name: "range", Listen: "127.0.0.30:23000-23063", RangeMode: mode}, 0, slog.New(slog.DiscardHandler))
			if errors.Is(err, steer.ErrNotAllowed) {
				t.Skipf("sk_lookup is not allowed here (run as root): %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, how := l.Ports(); how != mode.String() {
				t.Fatalf("ports taken by %s, want %s", how, mode)
			}
			r := route(bs, 0, nil)
			r.Name = "range"
			l.SetRoute(r)
			done := make(chan struct{})
			go func() { l.Serve(); close(done) }()
			defer func() { l.Close(); <-done; l.Wait(context.Background()) }()

			seen := map[string]bool{}
			for i := range 30 {
				src := lbtest.ClientIP(i)
				first, err := lbtest.Who(src, netip.MustParseAddrPort("127.0.0.30:23010"))
				if err != nil {
					t.Fatal(err)
				}
				second, err := lbtest.Who(src, netip.MustParseAddrPort("127.0.0.30:23050"))
				if err != nil || second != first {
					t.Fatalf("client %s: 23010 reached %s, 23050 reached %q (%v)", src, first, second, err)
				}
				seen[first] = true
			}
			if len(seen) < 2 {
				t.Fatalf("30 clients all on %v: the range does not balance", seen)
			}
			// Nothing listens on 23020 at any backend: a connection there is
			// refused, so the proxy did not send it to a port of its own choosing.
			c, err := lbtest.Dial("127.9.0.1", netip.MustParseAddrPort("127.0.0.30:23020"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := io.ReadFull(c, make([]byte, 1)); n != 0 {
				t.Fatal("a connection to a port no backend listens on was answered")
			}
		})
	}
}

// A port of a range is the client's choice: connections from one client
// to a port no CAS listens on are refused as that client's doing, to its
// own backend only, and take no CAS down, however many come (three took
// every CAS down through the passive check before). A port the listener
// names alone still counts against the backend.
func TestRangeRefusalIsTheClients(t *testing.T) {
	var bs []*lbtest.Backend
	for i, host := range []string{"127.0.0.41", "127.0.0.42", "127.0.0.43"} {
		b := lbtest.NewBackend(t, "cas"+string(rune('1'+i)), host)
		for _, port := range []int{23099, 23150} {
			if err := b.Listen(port); err != nil {
				t.Fatal(err)
			}
		}
		bs = append(bs, b)
	}
	lc := &config.Listener{Name: "range", Listen: "127.0.0.40:23099,23100-23163", RangeMode: config.RangePerPort}
	l, err := Listen(context.Background(), lc, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	d := &recordingDialer{}
	obs := &recorder{}
	r := route(bs, 0, d)
	r.Name, r.PassiveFall, r.Observer, r.ClientPorts = "range", 3, obs.observer(), lc.ClientPorts()
	l.SetRoute(r)
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	defer func() { l.Close(); <-done; l.Wait(context.Background()) }()

	const attacks = 12
	for range attacks {
		refusedOnce(t, "127.9.3.1", "127.0.0.40:23160")
	}
	for _, b := range r.Pool.Backends() {
		if !b.Healthy() {
			t.Fatalf("%s is down after %d connects to a closed port of the range: %s", b.Name, attacks, b.DownReason())
		}
		if _, failed := b.Totals(); failed != 0 {
			t.Fatalf("%s has %d failed connects counted against it, from a client's choice of port", b.Name, failed)
		}
	}
	if got := obs.list(); len(got) != attacks || got[0] != RefusedClientPort {
		t.Fatalf("refusals %v, want %d of %s", got, attacks, RefusedClientPort)
	}
	d.mu.Lock()
	dials := len(d.clients)
	d.mu.Unlock()
	if dials != attacks {
		t.Fatalf("%d dials for %d connections: a closed port of a range was retried on other backends", dials, attacks)
	}
	if _, err := lbtest.Who("127.9.3.2", netip.MustParseAddrPort("127.0.0.40:23150")); err != nil {
		t.Fatalf("a legitimate client after the attack: %v", err)
	}

	// 23099 is named alone: a CAS that refuses it is blamed and its
	// client tried elsewhere, as ever.
	pinned, err := lbtest.Who("127.9.3.3", netip.MustParseAddrPort("127.0.0.40:23099"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Name == pinned {
			b.StopListening()
		}
	}
	moved, err := lbtest.Who("127.9.3.3", netip.MustParseAddrPort("127.0.0.40:23099"))
	if err != nil || moved == pinned {
		t.Fatalf("client of %s whose fixed port refuses reached %q (%v), want another backend", pinned, moved, err)
	}
	if _, failed := r.Pool.Backend(pinned).Totals(); failed != 1 {
		t.Fatalf("%s refused a fixed port and has %d failed connects, want 1", pinned, failed)
	}
}

// refusedOnce connects from src to addr and expects the proxy to close
// the connection unanswered.
func refusedOnce(t *testing.T, src, addr string) {
	t.Helper()
	c, err := lbtest.Dial(src, netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := io.ReadFull(c, make([]byte, 1)); n != 0 {
		t.Fatalf("%s: answered, want refused", addr)
	}
}

// A range steered by sk_lookup leaves alone the ports other sockets
// listen on (here on its address) and those it is told to
// leave (the admin API's, the cluster's): their connections reach those
// sockets, not a backend. Before, the program ran ahead of the kernel's
// own lookup and forwarded them all, admin API included.
func TestSteeredRangeLeavesOtherSockets(t *testing.T) {
	b := lbtest.NewBackend(t, "cas1", "127.0.0.51")
	if err := b.Listen(23210); err != nil {
		t.Fatal(err)
	}
	other := map[int]string{23230: "127.0.0.50", 23240: "127.0.0.50"}
	for port, host := range other {
		ln, err := net.Listen("tcp4", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("other\n"))
				c.Close()
			}
		}()
	}
	l, err := listen(context.Background(), &config.Listener{Name: "range", Listen: "127.0.0.50:23200-23263", RangeMode: config.RangeSkLookup}, 0, slog.New(slog.DiscardHandler), nil, []uint16{23240})
	if errors.Is(err, steer.ErrNotAllowed) {
		t.Skipf("sk_lookup is not allowed here (run as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := route([]*lbtest.Backend{b}, 0, nil)
	r.Name = "range"
	l.SetRoute(r)
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	defer func() { l.Close(); <-done; l.Wait(context.Background()) }()

	if who, err := lbtest.Who("127.9.4.1", netip.MustParseAddrPort("127.0.0.50:23210")); err != nil || who != "cas1" {
		t.Fatalf("a port of the range reached %q (%v), want cas1", who, err)
	}
	for port := range other {
		c, err := lbtest.Dial("127.9.4.1", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.50"), uint16(port)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != "other\n" {
			t.Errorf("port %d, where another socket listens, answered %q: the range took it", port, line)
		}
	}
}
