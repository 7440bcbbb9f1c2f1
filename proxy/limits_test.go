//go:build linux

package proxy

import (
	"testing"
	"time"

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
