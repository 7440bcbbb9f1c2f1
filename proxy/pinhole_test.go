//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// Following the endpoint mapper, with nothing forwarded but it: every
// client asks it through the listener, gets its own CAS's port, and its
// call on that port at the listener's address reaches the CAS that
// handed the port out. The answers pass unchanged.
func TestPinholeFollowsTheEndpointMapper(t *testing.T) {
	g := newEPMRig(t, time.Minute)
	perCAS := map[string]int{}
	for i := range 12 {
		src := fmt.Sprintf("127.5.0.%d", i+1)
		port, err := lookup(src, g.l.Addr())
		if err != nil {
			t.Fatalf("client %s: %v", src, err)
		}
		got, err := rpcCall(src, g.at(port), dcerpc.EMSMDB, 0, nil)
		if err != nil {
			t.Fatalf("client %s on port %d: %v", src, port, err)
		}
		if g.svc[string(got)] != int(port) {
			t.Fatalf("client %s was handed port %d and answered by %s (whose port is %d)", src, port, got, g.svc[string(got)])
		}
		perCAS[string(got)]++
	}
	st := g.l.Pinholes().Stats()
	if st.Learned != 12 || st.Clients != 12 || st.Ports != len(perCAS) || st.Unparsed != 0 {
		t.Fatalf("pinholes %+v after 12 clients on %v", st, perCAS)
	}
	t.Logf("12 clients, each on its CAS: %v; %+v", perCAS, st)
}

// A learned port admits only the clients it was handed to: another
// client is refused and counted, and a port no one was handed has no
// socket at all.
func TestPinholeRefusesOthers(t *testing.T) {
	g := newEPMRig(t, time.Minute)
	port, err := lookup("127.5.1.1", g.l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rpcCall("127.5.1.2", g.at(port), dcerpc.EMSMDB, 0, nil); err == nil {
		t.Fatal("a client that never asked the endpoint mapper was let through")
	}
	if n := g.refusals(RefusedNoPinhole); n != 1 {
		t.Fatalf("%d refusals as no-pinhole, want 1", n)
	}
	other := freePort(t, g.vip)
	if _, err := lbtest.Dial("127.5.1.1", g.at(uint16(other))); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a port not handed out: %v, want connection refused", err)
	}
}

// When the CAS that handed a port out is down, a connection to the port
// is refused, not sent to the other CAS, where it means nothing; asking
// the endpoint mapper again gives the other CAS's port, which works.
func TestPinholeRefusesWhenItsCASIsDown(t *testing.T) {
	g := newEPMRig(t, time.Minute)
	src := "127.5.2.1"
	port, err := lookup(src, g.l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var handedBy string
	for name, p := range g.svc {
		if p == int(port) {
			handedBy = name
		}
	}
	g.r.Pool.Backend(handedBy).SetHealthy(false)
	if _, err := rpcCall(src, g.at(port), dcerpc.EMSMDB, 0, nil); err == nil {
		t.Fatalf("a connection to %s's port went through with %s down", handedBy, handedBy)
	}
	if n := g.refusals(RefusedPinholeDown); n != 1 {
		t.Fatalf("%d refusals as pinhole-backend-down, want 1", n)
	}
	again, err := lookup(src, g.l.Addr())
	if err != nil || again == port {
		t.Fatalf("asked again: port %d, %v", again, err)
	}
	if got, err := rpcCall(src, g.at(again), dcerpc.EMSMDB, 0, nil); err != nil || string(got) == handedBy {
		t.Fatalf("on the new port: %q, %v", got, err)
	}
}

// A learned port lives while its connection does, however long, and
// lapses a timeout after the last one closed: its socket then closes.
func TestPinholeLapses(t *testing.T) {
	g := newEPMRig(t, 300*time.Millisecond)
	src := "127.5.3.1"
	port, err := lookup(src, g.l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err := lbtest.Dial(src, g.at(port))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // three timeouts with the connection open
	if st := g.l.Pinholes().Stats(); st.Ports != 1 || st.Clients != 1 {
		c.Close()
		t.Fatalf("with a connection open: %+v", st)
	}
	c.Write(dcerpc.Bind(1, dcerpc.EMSMDB))
	if _, err := dcerpc.ReadPDU(c, nil); err != nil {
		t.Fatalf("the open connection, after three timeouts: %v", err)
	}
	c.Close()
	lbtest.Eventually(t, 3*time.Second, "the pinhole to lapse", func() bool { return g.l.Pinholes().Stats().Ports == 0 })
	if _, err := lbtest.Dial(src, g.at(port)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("after the pinhole lapsed: %v, want connection refused", err)
	}
}

// A connection to a learned port holds its client's pin while it is
// open, and pins a client whose pin lapsed to the CAS that handed the
// port out: the client's next ept_map goes to the same CAS, so its
// session stays on one.
func TestPinholeHoldsThePin(t *testing.T) {
	g := newEPMRig(t, time.Minute)
	src := "127.5.5.1"
	port, err := lookup(src, g.l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	key := g.r.Keyer.Key(netip.AddrPortFrom(netip.MustParseAddr(src), 0))
	rec, err := g.r.Table.Lookup(key)
	if err != nil {
		t.Fatal(err)
	}
	handedBy := rec.Backend
	g.r.Table.Forget(key) // as if the pin had expired
	c, err := lbtest.Dial(src, g.at(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(dcerpc.Bind(1, dcerpc.EMSMDB))
	if _, err := dcerpc.ReadPDU(c, nil); err != nil {
		t.Fatal(err)
	}
	if rec, err := g.r.Table.Lookup(key); err != nil || rec.Backend != handedBy || rec.Active != 1 {
		t.Fatalf("pin while the learned port's connection is open: %+v, %v; want %s with 1 connection", rec, err, handedBy)
	}
}

// Bytes on the endpoint mapper's connection that are not DCE/RPC are
// forwarded anyway, and counted.
func TestPinholeCountsUnparsed(t *testing.T) {
	g := newEPMRig(t, time.Minute)
	c, err := lbtest.Dial("127.5.4.1", g.l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("this is not DCE/RPC\n"))
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.Read(make([]byte, 16)) // the CAS closes on bytes it cannot read
	c.Close()
	lbtest.Eventually(t, 3*time.Second, "20 bytes counted", func() bool { return g.l.Pinholes().Stats().Unparsed == 20 })
}

// Many clients of one CAS asking its endpoint mapper at once learn the
// same port at once: the port is opened once, every client is admitted,
// and nothing counts as failing to open (a second bind of a port being
// opened used to fail with "address already in use", leaving that client
// without its pinhole).
func TestPinholeOpensOncePerPortUnderConcurrentAnswers(t *testing.T) {
	g := newEPMRig(t, time.Minute)
	const clients = 32
	start := make(chan struct{})
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			<-start
			src := fmt.Sprintf("127.5.3.%d", i+1)
			port, err := lookup(src, g.l.Addr())
			if err == nil {
				_, err = rpcCall(src, g.at(port), dcerpc.EMSMDB, 0, nil)
			}
			if err != nil {
				err = fmt.Errorf("client %s: %w", src, err)
			}
			errs <- err
		}()
	}
	close(start)
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := g.l.Pinholes().Stats(); st.OpenFailed != 0 || st.Learned != clients || st.Clients != clients {
		t.Fatalf("pinholes %+v after %d clients at once; want every client learned, none failed", st, clients)
	}
}
