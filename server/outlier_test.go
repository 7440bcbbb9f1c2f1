//go:build linux

package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/event"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// outlierTOML is pool cas with health checks off (so that only the
// detector decides) and an outlier table of the given ejection time:
// three faults in a row eject, one backend of three at a time.
func outlierTOML(ejection string) string {
	return "[pool.cas.health]\nenabled = false\n[pool.cas]\ndcerpc = \"calls\"\n[pool.cas.outlier]\nconsecutive_faults = 3\nejection_time = \"" + ejection +
		"\"\nmax_ejected_share = 34\n"
}

// outlierEvents collects the server's outlier events as "backend what".
func outlierEvents(srv *Server) chan string {
	ch := make(chan string, 64)
	srv.Events().Subscribe(func(e event.Event) {
		if e.Kind == event.Outlier {
			ch <- e.Backend + " " + e.What
		}
	})
	return ch
}

func waitEvent(t *testing.T, ch chan string, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-ch:
			if strings.HasPrefix(ev, prefix) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no outlier event %q within %s", prefix, within)
		}
	}
}

func fault(b *pool.Backend, n int) {
	for range n {
		b.ObserveRPC(pool.CallFault)
	}
}

// A CAS whose calls fault is ejected: through a real proxy over
// loopback, its pinned clients stay on it (their open connections and
// their new ones), no new client reaches it while the ejection lasts, a
// second faulty CAS is held back (one of three at a time), and once the
// ejection time is over it takes new clients again by itself; the
// stream says when it was ejected and when it returned. The proxy does
// not read faults yet on this branch, so the test reports them.
func TestEjectedCASTakesNoNewClientsPinnedStay(t *testing.T) {
	l := newRig(t, 1, outlierTOML("3s"))
	events := outlierEvents(l.srv)
	pinned := map[string][]string{} // backend -> its clients
	var open []*lbtest.Client
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	for i := range 30 {
		c, err := lbtest.Connect(lbtest.ClientIP(i), l.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		pinned[c.Backend] = append(pinned[c.Backend], lbtest.ClientIP(i))
	}
	victim := "cas1"
	if len(pinned[victim]) == 0 {
		t.Fatalf("no client of 30 on %s: %v", victim, pinned)
	}
	p := l.srv.Pool("cas")
	fault(p.Backend(victim), 3)
	ev := waitEvent(t, events, victim+" ejected (consecutive_faults)", 5*time.Second)
	ej, ok := p.Backend(victim).Ejected()
	if !ok {
		t.Fatal("event without ejection")
	}
	t.Logf("%s", ev)
	fault(p.Backend("cas2"), 10)
	if _, held := p.Backend("cas2").Ejected(); held {
		t.Fatal("a second CAS of three ejected; max_ejected_share 34% allows one")
	}
	for _, src := range pinned[victim] {
		if got := mustWho(t, src, l.addr(0)); got != victim {
			t.Fatalf("pinned client %s of ejected %s was sent to %s", src, victim, got)
		}
	}
	for i := range 60 {
		src := lbtest.ClientIP(100 + i)
		if got := mustWho(t, src, l.addr(0)); got == victim && time.Now().Before(ej.Until) {
			t.Fatalf("new client %s reached ejected %s", src, victim)
		}
	}
	if !time.Now().Before(ej.Until) {
		t.Fatal("the test's connections outlasted the 3s ejection: no-new-clients was not shown")
	}
	for _, c := range open { // every open connection still echoes
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "ping\n"); err != nil {
			t.Fatalf("open connection of %s to %s cut by the ejection: %v", c.LocalAddr(), c.Backend, err)
		}
		if line, err := c.R.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("open connection of %s to %s: echo %q, %v", c.LocalAddr(), c.Backend, line, err)
		}
	}
	waitEvent(t, events, victim+" takes new clients again", 10*time.Second)
	if time.Now().Before(ej.Until) {
		t.Fatalf("returned before the ejection's end %s", ej.Until)
	}
	got := 0
	for i := range 60 {
		if mustWho(t, lbtest.ClientIP(200+i), l.addr(0)) == victim {
			got++
		}
	}
	if got == 0 {
		t.Fatalf("%s took none of 60 new clients after its ejection ended", victim)
	}
}

// The last CAS that could take a new client is not ejected, through the
// server as in the pool: with cas2 and cas3 drained, cas1's faults eject
// nothing and new clients still reach it.
func TestNeverEjectsTheLastCAS(t *testing.T) {
	l := newRig(t, 1, strings.Replace(outlierTOML("1m"), "max_ejected_share = 34", "max_ejected_share = 100", 1))
	p := l.srv.Pool("cas")
	p.Backend("cas2").SetAdminState(pool.Drain)
	p.Backend("cas3").SetAdminState(pool.Drain)
	fault(p.Backend("cas1"), 30)
	if _, ej := p.Backend("cas1").Ejected(); ej {
		t.Fatal("ejected the only CAS that takes new clients")
	}
	if got := mustWho(t, lbtest.ClientIP(1), l.addr(0)); got != "cas1" {
		t.Fatalf("new client went to %s", got)
	}
}

// A reload keeps the ejection of a CAS it keeps, under a changed policy,
// and a reload that removes [pool.cas.outlier] ends it at once, with an
// event.
func TestReloadKeepsEjection(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	src := func(pool string) string { return listenersTOML(ports, "127.0.0.1") + pool + "\n" + backendsTOML(bs) }
	srv := start(t, src(outlierTOML("1m")), &lbtest.Buffer{})
	events := outlierEvents(srv)
	fault(srv.Pool("cas").Backend("cas2"), 3)
	waitEvent(t, events, "cas2 ejected", 5*time.Second)
	before, _ := srv.Pool("cas").Backend("cas2").Ejected()
	reload(t, srv, src(strings.Replace(outlierTOML("1m"), "consecutive_faults = 3", "consecutive_faults = 4", 1)))
	after, ok := srv.Pool("cas").Backend("cas2").Ejected()
	if !ok || after != before {
		t.Fatalf("after a reload that keeps cas2: ejection %+v (%v), was %+v", after, ok, before)
	}
	reload(t, srv, src("[pool.cas.health]\nenabled = false\n"))
	if _, ok := srv.Pool("cas").Backend("cas2").Ejected(); ok {
		t.Fatal("cas2 still ejected after [pool.cas.outlier] was removed")
	}
	waitEvent(t, events, "cas2 takes new clients again", 5*time.Second)
}
