//go:build linux

package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// One client over its limits is refused; the others are not touched, and
// a connection given back lets the client in again.
func TestClientLimits(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	r := route(bs, ports[0], nil)
	r.Limits = NewLimiter(ClientLimits{MaxConnsPerClient: 2})
	l := serve(t, r)
	a := lbtest.ClientIP(9700)
	var held []*lbtest.Client
	for range 2 {
		c, err := lbtest.Connect(a, l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	if _, err := lbtest.Connect(a, l.Addr()); err == nil {
		t.Fatal("a third connection of a client with max 2 was let through")
	}
	if _, err := lbtest.Who(lbtest.ClientIP(9701), l.Addr()); err != nil {
		t.Fatalf("another client was refused: %v", err)
	}
	held[0].Close()
	lbtest.Eventually(t, 2*time.Second, "the client let in again", func() bool {
		c, err := lbtest.Connect(a, l.Addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	held[1].Close()

	next := *r // an installed route is never changed: a reload installs a new one
	next.Limits = NewLimiter(ClientLimits{Rate: 0.5, Burst: 3})
	l.SetRoute(&next)
	b := lbtest.ClientIP(9702)
	for i := range 3 {
		if _, err := lbtest.Who(b, l.Addr()); err != nil {
			t.Fatalf("connection %d within the burst refused: %v", i+1, err)
		}
	}
	if _, err := lbtest.Who(b, l.Addr()); err == nil {
		t.Fatal("a fourth connection at once was let through a rate of 0.5/s, burst 3")
	}
	if _, err := lbtest.Who(lbtest.ClientIP(9703), l.Addr()); err != nil {
		t.Fatalf("another client was refused by one client's rate: %v", err)
	}
}

// An IPv6 client is its /64: two addresses of one /64 share one limit
// (an attacker's /64 holds 2^64 addresses), an address of another /64
// does not. In a namespace with those addresses on its loopback.
func TestClientLimitsByIPv6Prefix(t *testing.T) {
	ns := lbtest.NewNetNS(t)
	for _, a := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:2::1", "2001:db8:9::1"} {
		ns.Run("ip", "-6", "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
	// The backends stay in this namespace: the proxy dials them from its
	// own goroutines, whose threads are not in the test's namespace.
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	var l *Listener
	ns.Do(func() {
		r := route(bs, ports[0], nil)
		r.Limits = NewLimiter(ClientLimits{MaxConnsPerClient: 2, V6Prefix: 64})
		var err error
		if l, err = Listen(context.Background(), &config.Listener{Name: "v6", Listen: "[2001:db8:9::1]:0", RangeMode: config.RangeAuto}, 0, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		r.Name = "v6"
		l.SetRoute(r)
	})
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	defer func() { l.Close(); <-done }()
	connect := func(src string) error {
		var err error
		ns.Do(func() {
			var c *lbtest.Client
			if c, err = lbtest.Connect(src, l.Addr()); err == nil {
				t.Cleanup(func() { c.Close() })
			}
		})
		return err
	}
	for _, src := range []string{"2001:db8:1::1", "2001:db8:1::2"} {
		if err := connect(src); err != nil {
			t.Fatal(err)
		}
	}
	if err := connect("2001:db8:1::2"); err == nil {
		t.Fatal("a third connection from one /64 was let through: the limit counted addresses, not the /64")
	}
	if err := connect("2001:db8:2::1"); err != nil {
		t.Fatalf("a client of another /64 was refused: %v", err)
	}
}

// The connection limit is on by default, so every connection is admitted
// and given back here: go test -run XXX -bench LimiterAdmit ./proxy
// reports no allocation per connection and the cost of the pair.
func BenchmarkLimiterAdmitDone(b *testing.B) {
	l := NewLimiter(ClientLimits{MaxConnsPerClient: 30_000, V6Prefix: 64})
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			a := addrs[i%len(addrs)]
			l.admit(a)
			l.done(a)
			i++
		}
	})
}
