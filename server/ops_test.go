//go:build linux

package server

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// Three failed connects in a row take a backend down at once, before any
// active check would (here the active checks are an hour apart).
func TestPassiveCheck(t *testing.T) {
	l := newRig(t, 1, "[pool.cas]\npassive_fall = 2\nconnect_retries = 0\n[pool.cas.health]\ninterval = \"1h\"\n")
	owners := map[string][]string{}
	for i := range 40 {
		src := lbtest.ClientIP(7000 + i)
		b := mustWho(t, src, l.addr(0))
		owners[b] = append(owners[b], src)
	}
	l.backend("cas2").StopListening()
	// connect_retries = 0: a refused connect fails the client, and counts.
	for _, src := range owners["cas2"][:2] {
		lbtest.Who(src, l.addr(0))
	}
	if l.srv.Pool("cas").Backend("cas2").Healthy() {
		t.Fatal("cas2 still up after 2 failed connects with passive_fall = 2")
	}
	// Its clients now move without a failed connect.
	for _, src := range owners["cas2"] {
		if b, err := lbtest.Who(src, l.addr(0)); err != nil || b == "cas2" {
			t.Fatalf("client of down cas2: %s %v", b, err)
		}
	}
	if !strings.Contains(l.log.String(), "passive check") {
		t.Errorf("no log line for the passive check")
	}
}

// close_on_down closes a dead backend's connections at once so clients
// reconnect to a live CAS; without it they stay until the peer notices.
func TestCloseOnDown(t *testing.T) {
	l := newRig(t, 2, "[pool.cas]\nclose_on_down = true\n[pool.cas.health]\ninterval = \"30ms\"\nfall = 1\n")
	var c *lbtest.Client
	for i := 0; c == nil; i++ {
		cl, err := lbtest.Connect(lbtest.ClientIP(7100+i), l.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		if cl.Backend == "cas3" {
			c = cl
		} else {
			cl.Close()
		}
	}
	defer c.Close()
	// Only one port of cas3 dies; its connection on the other port is
	// healthy at the TCP level and only close_on_down ends it.
	l.backend("cas3").StopListening()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.R.ReadByte()
	if err == nil {
		t.Fatal("data on a connection to a down backend")
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection to the down backend was not closed")
	}
}

// A drain with a deadline becomes maintenance when it runs out: open
// connections are closed and their clients move.
func TestDrainDeadline(t *testing.T) {
	l := newRig(t, 1, "[pool.cas.health]\nenabled = false\n")
	c, err := lbtest.Connect(lbtest.ClientIP(7200), l.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	set := time.Now()
	if _, err := l.srv.SetState("cas", c.Backend, pool.Drain, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Within the deadline the connection works. A machine too busy to
	// get its echo back within 300ms rightly finds it cut; only a cut
	// before the deadline is wrong.
	c.Write([]byte("a\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := c.R.ReadString('\n'); err != nil || line != "a\n" {
		if since := time.Since(set); since < 300*time.Millisecond || err == nil {
			t.Fatalf("draining connection %s into a 300ms deadline: %q %v", since, line, err)
		}
		t.Logf("the echo took past the 300ms deadline (%s): the connection was cut, as it should", time.Since(set))
	}
	// The deadline here only bounds a test that would otherwise hang.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = c.R.ReadByte()
	var ne interface{ Timeout() bool }
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection not closed at the drain deadline: %v", err)
	}
	if st := l.srv.Pool("cas").Backend(c.Backend).Status(); st != "maint" {
		t.Fatalf("state after the deadline = %s, want maint", st)
	}
	if b := mustWho(t, lbtest.ClientIP(7200), l.addr(0)); b == c.Backend {
		t.Fatalf("client stayed on %s after the drain deadline", b)
	}
	// A state change before the deadline cancels it.
	other := "cas1"
	if c.Backend == "cas1" {
		other = "cas2"
	}
	l.srv.SetState("cas", other, pool.Drain, 100*time.Millisecond)
	l.srv.SetState("cas", other, pool.Ready, 0)
	// A witness: the third backend drains with a deadline set after the
	// cancelled one and 200ms later. Once it has fired, the cancelled one
	// was long due however slow the machine.
	witness := ""
	for _, name := range []string{"cas1", "cas2", "cas3"} {
		if name != c.Backend && name != other {
			witness = name
		}
	}
	l.srv.SetState("cas", witness, pool.Drain, 300*time.Millisecond)
	lbtest.Eventually(t, 30*time.Second, "the witness's drain deadline", func() bool {
		return l.srv.Pool("cas").Backend(witness).Status() == "maint"
	})
	if st := l.srv.Pool("cas").Backend(other).Status(); st != "up" {
		t.Fatalf("a cancelled drain deadline still fired: %s", st)
	}
}

// failback = true brings a moved client home at its next connection with
// nothing open; by default it stays where it was moved.
func TestFailback(t *testing.T) {
	for _, failback := range []bool{false, true} {
		l := newRig(t, 1, "[pool.cas]\nfailback = "+map[bool]string{false: "false", true: "true"}[failback]+"\n[pool.cas.health]\nenabled = false\n")
		src := lbtest.ClientIP(7300)
		home := mustWho(t, src, l.addr(0))
		l.srv.SetState("cas", home, pool.Maint, 0)
		moved := mustWho(t, src, l.addr(0))
		if moved == home {
			t.Fatal("maint did not move the client")
		}
		l.srv.SetState("cas", home, pool.Ready, 0)
		// Failback waits until the client has nothing open.
		key := affinity.Keyer{}.Key(netip.MustParseAddrPort(src + ":1"))
		lbtest.Eventually(t, 5*time.Second, "the client's connections closed", func() bool {
			in, err := l.srv.Table("cas").Lookup(key)
			return err == nil && in.Active == 0
		})
		got := mustWho(t, src, l.addr(0))
		switch {
		case failback && got != home:
			t.Fatalf("failback: client on %s, want home %s", got, home)
		case !failback && got != moved:
			t.Fatalf("no failback: client went %s -> %s; it must stay", moved, got)
		}
		// Adding capacity never moves a settled client.
		if again := mustWho(t, src, l.addr(0)); again != got {
			t.Fatalf("client moved again: %s -> %s", got, again)
		}
	}
}

// max_conns sends new clients elsewhere when a backend is full; its own
// pinned clients still reach it.
func TestMaxConns(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts[:2], 1)
	src := listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n" +
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\nmax_conns = 2\nweight = 1000\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\nweight = 1\n"
	_ = bs
	srv := start(t, src, &lbtest.Buffer{})
	addr := srv.Addrs()["l0"]
	var open []*lbtest.Client
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range 6 {
		c, err := lbtest.Connect(lbtest.ClientIP(7400+i), addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	on := map[string]int{}
	for _, c := range open {
		on[c.Backend]++
	}
	if on["cas1"] != 2 || on["cas2"] != 4 {
		t.Fatalf("with max_conns 2 on the heavily weighted cas1: %v", on)
	}
	// A pinned client of the full cas1 still reaches it (a client of
	// cas2 would prove nothing: cas2 is not full).
	for i, c := range open {
		if c.Backend != "cas1" {
			continue
		}
		if b := mustWho(t, lbtest.ClientIP(7400+i), addr); b != "cas1" {
			t.Fatalf("a client pinned to the full cas1 was sent to %s", b)
		}
		return
	}
	t.Fatal("no client on cas1")
}

// Service-aware checks: a send-expect check that the backend's reply does
// not satisfy keeps it down, and every backend whose reply matches is up.
func TestServiceAwareChecks(t *testing.T) {
	l := newRig(t, 2, "[pool.cas.check.greeting]\ntype = \"send-expect\"\nexpect = \"cas1\"\ninterval = \"30ms\"\n"+
		"[pool.cas.check.port]\ntype = \"tcp\"\ninterval = \"30ms\"\n")
	p := l.srv.Pool("cas")
	lbtest.Eventually(t, 5*time.Second, "cas2 and cas3 down, cas1 up", func() bool {
		return p.Backend("cas1").Healthy() && !p.Backend("cas2").Healthy() && !p.Backend("cas3").Healthy()
	})
	for i := range 10 {
		if b := mustWho(t, lbtest.ClientIP(7500+i), l.addr(1)); b != "cas1" {
			t.Fatalf("client sent to %s, which fails the greeting check", b)
		}
	}
	if !strings.Contains(l.log.String(), "check=greeting") {
		t.Errorf("the down log line does not name the failing check")
	}
}

// slow_start gives a recovered backend a small share of new clients at
// first.
func TestSlowStart(t *testing.T) {
	l := newRig(t, 1, "[pool.cas]\nslow_start = \"1h\"\n[pool.cas.health]\nenabled = false\n")
	b := l.srv.Pool("cas").Backend("cas3")
	b.SetHealthy(false)
	b.SetHealthy(true) // just recovered: its weight is ramping from ~0
	n := 0
	for i := range 90 {
		if mustWho(t, lbtest.ClientIP(7600+i), l.addr(0)) == "cas3" {
			n++
		}
	}
	if n > 5 {
		t.Fatalf("a backend 0s into a 1h slow start got %d of 90 new clients", n)
	}
}

// A reload keeps every check's streak: a backend that stopped answering
// goes down after fall failures even when the config is reloaded more
// often than fall intervals.
func TestReloadKeepsHealthStreaks(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	src := listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\ninterval = \"100ms\"\nfall = 5\n" + backendsTOML(bs)
	srv := start(t, src, &lbtest.Buffer{})
	p := srv.Pool("cas")
	lbtest.Eventually(t, 5*time.Second, "all up", func() bool {
		return p.Backend("cas1").Healthy() && p.Backend("cas2").Healthy() && p.Backend("cas3").Healthy()
	})
	// Every backend has had a check after the one that brought it up, so
	// its first result no longer decides alone and a failure must build
	// a streak.
	allUp := time.Now()
	lbtest.Eventually(t, 5*time.Second, "a later check of every backend", func() bool {
		for _, name := range []string{"cas1", "cas2", "cas3"} {
			if c, ok := p.Backend(name).LastCheck(); !ok || !c.At.After(allUp) {
				return false
			}
		}
		return true
	})
	// A reload after every check of cas1 the test sees: a reload that
	// reset the streak would keep cas1 up for ever. Counting checks, not
	// waiting a time, keeps this the same on a busy machine.
	last, _ := p.Backend("cas1").LastCheck()
	bs[0].StopListening()
	for failed := 0; p.Backend("cas1").Healthy(); {
		if failed > 3*5 {
			t.Fatalf("cas1 still up after %d failed checks (fall 5) with a reload after each", failed)
		}
		lbtest.Eventually(t, 30*time.Second, "the next check of cas1", func() bool {
			c, ok := p.Backend("cas1").LastCheck()
			if !ok || !c.At.After(last.At) {
				return false
			}
			last = c
			return true
		})
		if last.Err != "" {
			failed++
		}
		cfg, err := config.Parse("test.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	if !p.Backend("cas2").Healthy() {
		t.Fatal("cas2 went down too")
	}
}

// A client with a connection open keeps its pin however full the table:
// with max_entries 1 and round-robin, other clients come and go unpinned
// and the busy client's next connections still reach its backend.
func TestBusyPinSurvivesFullTable(t *testing.T) {
	l := newRig(t, 1, "[pool.cas]\nbalance = \"round-robin\"\n[pool.cas.health]\nenabled = false\n[pool.cas.affinity]\nmax_entries = 1\n")
	a, err := lbtest.Connect(lbtest.ClientIP(7600), l.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := 1; i <= 6; i++ {
		mustWho(t, lbtest.ClientIP(7600+i), l.addr(0))
		if b := mustWho(t, lbtest.ClientIP(7600), l.addr(0)); b != a.Backend {
			t.Fatalf("busy client moved from %s to %s after %d other clients", a.Backend, b, i)
		}
	}
	if st := l.srv.Table("cas").Stats(); st.Full+st.PrefixFull == 0 || st.Evicted != 0 { // a full table, or the clients' /24 at its share of one
		t.Fatalf("table stats %+v: want new clients unpinned, nothing evicted", st)
	}
}
