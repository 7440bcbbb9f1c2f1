//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/operator"
	"github.com/stickylb/stickylb/pool"
)

// An operator's decisions outlive a restart: cas2 in maintenance, cas3
// draining with a deadline and cas1 at weight 5 are what a new process
// on the same snapshot file starts with (a restart put every backend
// back in service before). A reload that changes cas1's weight in the
// file overrides the operator's; one that removes cas3 forgets its
// drain, so the file adding it back brings it back ready.
func TestOperatorDecisionsOutliveRestart(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	dir := t.TempDir()
	src := func(weight1 int, with3 bool) string {
		s := fmt.Sprintf("[global]\nsnapshot_file = %q\n", filepath.Join(dir, "pins.json")) + listenersTOML(ports, "127.0.0.1") +
			"[pool.cas.health]\nenabled = false\n" + backendsTOML(bs[:2])
		s = strings.Replace(s, "address = \"127.0.0.11\"\n", fmt.Sprintf("address = \"127.0.0.11\"\nweight = %d\n", weight1), 1)
		if with3 {
			s += backendsTOML(bs[2:])
		}
		return s
	}
	first := launch(t, src(1, true), &lbtest.Buffer{})
	first.SetState("cas", "cas2", pool.Maint, 0)
	first.SetState("cas", "cas3", pool.Drain, time.Hour)
	first.SetWeight("cas", "cas1", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first.Shutdown(ctx)

	logs := &lbtest.Buffer{}
	second := start(t, src(1, true), logs)
	p := second.Pool("cas")
	if got := []string{p.Backend("cas1").Status(), p.Backend("cas2").Status(), p.Backend("cas3").Status()}; fmt.Sprint(got) != "[up maint drain]" {
		t.Fatalf("after the restart cas1-3 are %v, want [up maint drain]\n%s", got, logs)
	}
	if w := p.Backend("cas1").Weight(); w != 5 {
		t.Fatalf("cas1's weight after the restart is %d, want the operator's 5", w)
	}
	if b := mustWho(t, "127.9.1.1", second.Addrs()["l0"]); b == "cas2" || b == "cas3" {
		t.Fatalf("a new client went to %s, which the operator took out", b)
	}
	reload(t, second, src(2, false))
	if w := p.Backend("cas1").Weight(); w != 2 {
		t.Fatalf("after the file changed cas1's weight to 2, it is %d", w)
	}
	reload(t, second, src(2, true))
	if st := p.Backend("cas3").Status(); st != "up" {
		t.Fatalf("cas3 removed and added back is %s, want up (ready)", st)
	}
	if st := p.Backend("cas2").Status(); st != "maint" {
		t.Fatalf("cas2 after two reloads is %s, want maint", st)
	}
}

func reload(t *testing.T, s *Server, src string) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
}

// An operator's action at one member holds at every member within a
// second, and a member that restarts with no file of its own takes the
// decisions with the whole table: cas1 put in maintenance through member
// 1 of 3, then clients connecting through every member; none reaches
// cas1 and no two members disagree (79 of 300 clients still reached cas1
// before, with 119 disagreements).
func TestClusterSharesOperatorDecisions(t *testing.T) {
	f := newFleet(t, 3)
	if _, err := f.members[0].SetState("cas", "cas1", pool.Maint, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lbtest.Eventually(t, time.Second, "cas1 in maintenance at every member", func() bool {
		for _, m := range f.members[:3] {
			if m.Pool("cas").Backend("cas1").Status() != "maint" {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	f.kill(2)
	f.start(2, 3)
	lbtest.Eventually(t, 5*time.Second, "the restarted member holding cas1's maintenance", func() bool {
		return f.members[2].Pool("cas").Backend("cas1").Status() == "maint"
	})
	disagree, onCas1 := 0, 0
	for c := range 60 {
		client := fmt.Sprintf("127.8.%d.%d", c/200, c%200+1)
		seen := map[string]bool{}
		for m := range 3 {
			for port := range f.ports {
				b := mustWho(t, client, f.addr(m, port))
				seen[b] = true
				if b == "cas1" {
					onCas1++
				}
			}
		}
		if len(seen) > 1 {
			disagree++
		}
	}
	if onCas1 > 0 || disagree > 0 {
		t.Fatalf("with cas1 in maintenance through member 1: %d connections reached cas1, %d of 60 clients split", onCas1, disagree)
	}
	t.Logf("cas1 in maintenance at all 3 members %v after the call at one; the restarted member took it with the table; 60 clients x 3 members x %d ports: 0 on cas1, 0 split", took.Round(time.Millisecond), len(f.ports))
}

// A backend a reload removes stays listed as removed, with its open
// connection and its pins, until it has neither; it disappeared at once
// before, and the pool's pins no longer added up.
func TestRemovedBackendListedWhileInUse(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	base := listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n"
	srv := start(t, base+backendsTOML(bs), &lbtest.Buffer{})
	addr := srv.Addrs()["l0"]
	var on3 *lbtest.Client
	for i := range 40 {
		c, err := lbtest.Connect(lbtest.ClientIP(7600+i), addr)
		if err != nil {
			t.Fatal(err)
		}
		if c.Backend == "cas3" && on3 == nil {
			on3 = c
			continue
		}
		c.Close()
	}
	if on3 == nil {
		t.Fatal("no client on cas3")
	}
	reload(t, srv, base+backendsTOML(bs[:2]))
	listed := func() (string, int64) {
		for _, b := range srv.Pools()[0].Listed() {
			if b.Name == "cas3" {
				return b.Status(), b.Active()
			}
		}
		return "", 0
	}
	// The other clients' closes end on the proxy's goroutines: cas3's
	// count falls to the one connection held.
	lbtest.Eventually(t, 5*time.Second, "cas3 listed as removed with its one open connection", func() bool {
		st, open := listed()
		return st == "removed" && open == 1
	})
	on3.Close()
	lbtest.Eventually(t, 2*time.Second, "cas3's connection closed", func() bool { _, open := listed(); return open == 0 })
	if st, _ := listed(); st != "removed" {
		t.Fatal("cas3 unlisted while pins to it remain")
	}
	for i := range 40 {
		mustWho(t, lbtest.ClientIP(7600+i), addr) // cas3's clients move
	}
	if st, _ := listed(); st != "" {
		t.Fatalf("cas3 still listed (%s) with neither connections nor pins", st)
	}
}

// ctl close --client at one member closes the client's connections at
// every member: a client with a connection open through each of three
// members has all three closed by one call at member 1.
func TestClusterClosesEverywhere(t *testing.T) {
	f := newFleet(t, 3)
	const client = "127.8.9.1"
	var open []*lbtest.Client
	for m := range 3 {
		c, err := lbtest.Connect(client, f.addr(m, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	closed, asked := f.members[0].CloseEverywhere("cas", client, "")
	if closed != 1 || asked != 2 {
		t.Fatalf("closed %d here and asked %d members; want 1 and 2", closed, asked)
	}
	for i, c := range open {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.R.ReadByte()
		var ne interface{ Timeout() bool }
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the client's connection through member %d is still open: %v", i+1, err)
		}
	}
}

// Every member publishes the decisions it holds, so each can say which
// others agree: after a drain at member 1 all three report "agreed"; a
// decision member 1 holds but has not sent reads "not heard yet" for the
// other two until it is sent.
func TestClusterAgreementShown(t *testing.T) {
	f := newFleet(t, 3)
	if _, err := f.members[0].SetState("cas", "cas2", pool.Drain, 0); err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 5*time.Second, "every member agreed on cas2's drain", func() bool {
		for _, m := range f.members[:3] {
			if m.Agreement("cas", "cas2") != "agreed" {
				return false
			}
		}
		return true
	})
	s := f.members[0]
	stamp := affinity.NewClock(nil).Now()
	s.decisions.Merge([]operator.Decision{{Pool: "cas", Backend: "cas3", State: pool.Maint, Weight: -1, Version: stamp}}, "nobody") // held here, not sent
	if got := s.Agreement("cas", "cas3"); !strings.Contains(got, "not heard yet") {
		t.Fatalf("a decision no other member has reads %q", got)
	}
}

// A drain's deadline turning the backend to maintenance is an event, as
// an operator's action is (it was only logged).
func TestDrainDeadlineIsAnEvent(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	cfg, err := config.Parse("test.toml", []byte(listenersTOML(ports, "127.0.0.1")+"[pool.cas.health]\nenabled = false\n"+backendsTOML(bs)))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 4)
	var stream event.Stream
	stream.Subscribe(func(e event.Event) {
		if e.Kind == event.Decision {
			events <- e.Backend + " " + e.What
		}
	})
	srv, err := New(cfg, Options{Events: &stream})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown(context.Background())
	srv.SetState("cas", "cas2", pool.Drain, 100*time.Millisecond)
	select {
	case ev := <-events:
		if ev != "cas2 set maint (drain deadline reached)" {
			t.Fatalf("event %q", ev)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no event when the drain deadline was reached")
	}
}

// A rolling addition of a CAS, one member at a time, moves no client:
// while a member lacks cas4, no member gives cas4 a new client (a pin
// there would be moved off it by the member that lacks it: 21 of 30
// such clients moved before); once every member has it, it takes new
// clients at all of them. 0 of 60 pinned clients move at any step.
func TestClusterRollingCASAddition(t *testing.T) {
	f := newFleet(t, 3)
	cas4 := lbtest.NewBackend(t, "cas4", "127.0.0.14")
	for _, p := range f.ports {
		if err := cas4.Listen(p); err != nil {
			t.Skipf("port %d is taken on 127.0.0.14: %v", p, err)
		}
	}
	owner := map[string]string{}
	for c := range 60 {
		owner[fmt.Sprintf("127.8.20.%d", c+1)] = mustWho(t, fmt.Sprintf("127.8.20.%d", c+1), f.addr(c%3, 0))
	}
	moved := func(step string) {
		t.Helper()
		for client, was := range owner {
			for m := range 3 {
				if b := mustWho(t, client, f.addr(m, 1)); b != was {
					t.Fatalf("%s: client %s moved from %s to %s at member %d", step, client, was, b, m+1)
				}
			}
		}
	}
	newOn4 := func() int {
		n := 0
		for c := range 60 {
			if mustWho(t, fmt.Sprintf("127.8.21.%d", c+1), f.addr(c%3, 0)) == "cas4" {
				n++
			}
		}
		return n
	}
	f.bs = append(f.bs, cas4)
	for i := range 3 {
		reload(t, f.members[i], f.source(i, 3))
		if i == 0 {
			// New clients first through member 1 (which has cas4), then
			// member 3 (which lacks it), then member 1 again: each on one
			// backend throughout.
			for c := range 30 {
				client := fmt.Sprintf("127.8.22.%d", c+1)
				first := mustWho(t, client, f.addr(0, 0))
				time.Sleep(time.Millisecond)
				if b, c := mustWho(t, client, f.addr(2, 0)), mustWho(t, client, f.addr(0, 1)); b != first || c != first {
					t.Fatalf("a new client while member 3 lacks cas4: %s at member 1, %s at member 3, then %s at member 1", first, b, c)
				}
			}
		}
		if i < 2 {
			if st := f.members[i].Pool("cas").Backend("cas4"); st == nil || st.TakesNew() {
				t.Fatalf("member %d gives new clients to cas4 while another member lacks it", i+1)
			}
			if a := f.members[i].Agreement("cas", "cas4"); !strings.Contains(a, "lack it") {
				t.Fatalf("member %d does not say who lacks cas4: %q", i+1, a)
			}
			lacks := 0
			for _, mi := range f.members[i].Cluster().Members() {
				if slices.Contains(mi.Lacks, "cas/cas4") {
					lacks++
				}
			}
			if lacks != 2-i {
				t.Fatalf("member %d lists %d members lacking cas4, want %d", i+1, lacks, 2-i)
			}
		}
		moved(fmt.Sprintf("cas4 added at %d of 3 members", i+1))
	}
	lbtest.Eventually(t, 5*time.Second, "cas4 taking new clients at every member", func() bool {
		for _, m := range f.members[:3] {
			if !m.Pool("cas").Backend("cas4").TakesNew() {
				return false
			}
		}
		return true
	})
	moved("cas4 at every member")
	if n := newOn4(); n == 0 {
		t.Fatal("no new client went to cas4 once every member had it")
	}
}
