//go:build linux

package server

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// fleet is three (or more) cluster members on their own loopback
// addresses in front of one set of backends, each with one listener per
// backend port.
type fleet struct {
	t       *testing.T
	bs      []*lbtest.Backend
	ports   []int
	gossip  []string // each member's cluster address
	members []*Server
	logs    []*lbtest.Buffer
	// snapshots, when set, is a directory where each member keeps its
	// pins (global.snapshot_file).
	snapshots string
}

func newFleet(t *testing.T, n int) *fleet { return startFleet(t, n, "") }

// startFleet starts n members, keeping their pins in snapshots when it is
// not "".
func startFleet(t *testing.T, n int, snapshots string) *fleet {
	t.Helper()
	bs, ports := lbtest.StartBackends(t, casHosts, 2)
	f := &fleet{t: t, bs: bs, ports: ports, snapshots: snapshots}
	for i := range n + 1 { // one spare address for a member added later
		f.gossip = append(f.gossip, lbtest.FreeAddr(t, fmt.Sprintf("127.0.2.%d", i+1)))
	}
	f.members, f.logs = make([]*Server, n+1), make([]*lbtest.Buffer, n+1)
	f.startAll(n)
	return f
}

// startAll starts the first n members at once: the first member of a new
// cluster waits sync_timeout for peers that are not there yet.
func (f *fleet) startAll(n int) {
	var wg sync.WaitGroup
	for i := range n {
		f.logs[i] = &lbtest.Buffer{}
		wg.Go(func() { f.members[i] = launch(f.t, f.source(i, n), f.logs[i]) })
	}
	wg.Wait()
	for i := range n {
		if f.members[i] == nil {
			f.t.FailNow()
		}
	}
}

// source is member i's config; peers are the first n members.
func (f *fleet) source(i, n int) string {
	host, _, _ := net.SplitHostPort(f.gossip[i])
	peers := ""
	for _, g := range f.gossip[:n] {
		peers += fmt.Sprintf("%q, ", g)
	}
	global := ""
	if f.snapshots != "" {
		global = fmt.Sprintf("[global]\nsnapshot_file = %q\n", filepath.Join(f.snapshots, fmt.Sprintf("m%d.json", i+1)))
	}
	return global + listenersTOML(f.ports, host) + `
[pool.cas.health]
interval = "100ms"
[pool.cas.affinity]
ttl = "3h"
` + backendsTOML(f.bs) + fmt.Sprintf(`
[cluster]
bind = %q
peers = [%s]
node_name = "m%d"
sync_timeout = "5s"
sync_interval = "1m" # long: changes must arrive as they happen, not by the next sync
`, f.gossip[i], peers, i+1)
}

// start starts member i (again), listing the first n members as peers.
func (f *fleet) start(i, n int) {
	f.logs[i] = &lbtest.Buffer{}
	f.members[i] = start(f.t, f.source(i, n), f.logs[i])
}

// kill stops member i without a word to the others, as a crash would
// (its listeners close and its cluster member shuts down unannounced).
func (f *fleet) kill(i int) {
	s := f.members[i]
	s.Cluster().Halt()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.Shutdown(ctx)
	f.members[i] = nil
}

func (f *fleet) addr(member, port int) netip.AddrPort {
	return f.members[member].Addrs()[fmt.Sprintf("l%d", port)]
}

func (f *fleet) backend(member int, client string) string {
	in, err := f.members[member].Table("cas").Lookup(affinity.Keyer{}.Key(netip.AddrPortFrom(netip.MustParseAddr(client), 0)))
	if err != nil {
		return ""
	}
	return in.Backend
}

// A client's connections, spread over the members and the ports, reach
// one backend, also after one member alone moved it (the others saw its
// backend up all along) and the backend came back.
func TestClusterMembersAgree(t *testing.T) {
	f := newFleet(t, 3)
	const clients = 60
	first := map[string]string{}
	for c := range clients {
		src := lbtest.ClientIP(c)
		first[src] = mustWho(t, src, f.addr(c%3, 0))
	}
	// Member 1 alone takes cas1 out; its clients reconnect there and are
	// re-pinned. Members 2 and 3 still see cas1 ready.
	f.members[0].Pool("cas").Backend("cas1").SetAdminState(pool.Maint)
	moved := map[string]string{}
	start := time.Now()
	for src, b := range first {
		if b == "cas1" {
			moved[src] = mustWho(t, src, f.addr(0, 1))
		}
	}
	if len(moved) == 0 {
		t.Fatal("no client was on cas1; the test proves nothing")
	}
	lbtest.Eventually(t, 5*time.Second, "re-pins reaching members 2 and 3", func() bool {
		for src, b := range moved {
			if f.backend(1, src) != b || f.backend(2, src) != b {
				return false
			}
		}
		return true
	})
	t.Logf("%d re-pins made at member 1 reached members 2 and 3 within %s", len(moved), time.Since(start).Round(time.Millisecond))
	f.members[0].Pool("cas").Backend("cas1").SetAdminState(pool.Ready)
	maps.Copy(first, moved)
	f.checkPins(first, "after cas1 came back")
}

// 64 first connections of one client, at three members at once, land on
// one backend: every member places a new client by the same hash.
func TestClusterParallelFirstConnections(t *testing.T) {
	f := newFleet(t, 3)
	for c := range 5 {
		src := lbtest.ClientIP(1000 + c)
		got := make(chan string, 64)
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				b, err := lbtest.Who(src, f.addr(i%3, i%len(f.ports)))
				if err != nil {
					t.Error(err)
				}
				got <- b
			})
		}
		wg.Wait()
		close(got)
		seen := map[string]int{}
		for b := range got {
			seen[b]++
		}
		if len(seen) != 1 {
			t.Fatalf("client %s: 64 parallel first connections over 3 members reached %v", src, seen)
		}
	}
}

// checkPins sends each client of want through every running member, on
// the ports in turn, and fails at the first connection that reaches
// another backend than the client's pin.
func (f *fleet) checkPins(want map[string]string, when string) {
	f.t.Helper()
	i := 0
	for src, pin := range want {
		for m, s := range f.members {
			if s == nil {
				continue
			}
			if got := mustWho(f.t, src, f.addr(m, i%len(f.ports))); got != pin {
				f.t.Fatalf("%s: client %s reached %s through member %d; its pin is %s", when, src, got, m+1, pin)
			}
			i++
		}
	}
}

// pinWithRepins pins clients from ClientIP(base) on, and re-pins those of
// cas2 elsewhere, which the hash alone cannot reproduce: a member that
// served without them would send these clients back to cas2. It returns
// each client's pin once every member holds it.
func (f *fleet) pinWithRepins(clients, base int) map[string]string {
	t := f.t
	t.Helper()
	want := map[string]string{}
	for c := range clients {
		src := lbtest.ClientIP(base + c)
		want[src] = mustWho(t, src, f.addr(0, 0))
	}
	f.members[0].Pool("cas").Backend("cas2").SetAdminState(pool.Maint)
	for src, b := range want {
		if b == "cas2" {
			want[src] = mustWho(t, src, f.addr(0, 0))
		}
	}
	f.members[0].Pool("cas").Backend("cas2").SetAdminState(pool.Ready)
	lbtest.Eventually(t, 5*time.Second, "every member holding every pin", func() bool {
		for src, b := range want {
			for m, s := range f.members {
				if s != nil && f.backend(m, src) != b {
					return false
				}
			}
		}
		return true
	})
	return want
}

// A member that crashes takes no pin with it; one that restarts, or a
// new one, learns every pin before it serves. Under this, a rolling
// restart of every member moves no client.
func TestClusterRollingRestart(t *testing.T) {
	f := newFleet(t, 3)
	const clients = 40
	want := f.pinWithRepins(clients, 2000)
	wantLen := f.members[0].Table("cas").Len()
	f.kill(1)
	if n := f.members[0].Table("cas").Len(); n != wantLen {
		t.Fatalf("after a member crashed the others hold %d pins, want %d", n, wantLen)
	}
	f.checkPins(want, "member 2 crashed")
	for i := range 3 {
		if f.members[i] != nil {
			f.members[i].Shutdown(context.Background())
		}
		f.start(i, 3) // no snapshot file: every pin it has comes from its peers
		if n := f.members[i].Table("cas").Len(); n != wantLen || !f.members[i].Ready() {
			t.Fatalf("member %d restarted ready=%v with %d pins, want %d", i+1, f.members[i].Ready(), n, wantLen)
		}
		f.checkPins(want, fmt.Sprintf("member %d restarted", i+1))
	}
	f.start(3, 4)
	if n := f.members[3].Table("cas").Len(); n != wantLen {
		t.Fatalf("a fourth member started with %d pins, want %d", n, wantLen)
	}
	f.checkPins(want, "a fourth member joined")
}

// rotation is the members' listener addresses a router would send
// clients to, as members leave it and come back.
type rotation struct {
	mu    sync.Mutex
	addrs map[int][]netip.AddrPort // member -> its listeners
	next  int
}

func (r *rotation) set(m int, s *Server, ports int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s == nil {
		delete(r.addrs, m)
		return
	}
	var as []netip.AddrPort
	for p := range ports {
		as = append(as, s.Addrs()[fmt.Sprintf("l%d", p)])
	}
	r.addrs[m] = as
}

// pick is the next connection's member and address, in turn.
func (r *rotation) pick() (int, netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	var ms []int
	for m := range r.addrs {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	m := ms[r.next%len(ms)]
	return m, r.addrs[m][r.next%len(r.addrs[m])]
}

// A rolling upgrade under load: while clients keep connecting through
// whichever members are in rotation, each member in turn leaves the
// rotation, shuts down, starts again with no snapshot and returns. No
// client reaches another backend than its pin at any moment.
func TestClusterRollingRestartUnderLoad(t *testing.T) {
	f := newFleet(t, 3)
	const clients = 40
	want := f.pinWithRepins(clients, 3000)
	rot := &rotation{addrs: map[int][]netip.AddrPort{}}
	for m := range 3 {
		rot.set(m, f.members[m], len(f.ports))
	}
	var checked, moved, failed atomic.Int64
	var movedSample atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Minute) // bounds the loop if the test stalls
	for w := range 4 {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				src := lbtest.ClientIP(3000 + i%clients)
				m, addr := rot.pick()
				got, err := lbtest.Who(src, addr)
				switch {
				case err != nil:
					failed.Add(1)
				case got != want[src]:
					moved.Add(1)
					movedSample.Store(fmt.Sprintf("client %s reached %s through member %d; its pin is %s", src, got, m+1, want[src]))
				default:
					checked.Add(1)
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad() // also when a step fails
	// Each step of the upgrade comes after 40 more connections were
	// checked, not after a time, so the load proves as much on a busy
	// machine as on an idle one.
	more := func(step string) {
		t.Helper()
		base := checked.Load()
		lbtest.Eventually(t, time.Minute, "40 more connections checked "+step, func() bool { return checked.Load() >= base+40 })
	}
	for i := range 3 {
		more(fmt.Sprintf("before member %d restarts", i+1))
		rot.set(i, nil, 0) // out of rotation first, as keepalived or a router does
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		f.members[i].Shutdown(ctx)
		cancel()
		f.start(i, 3)
		rot.set(i, f.members[i], len(f.ports))
	}
	more("after the last restart")
	stopLoad()
	t.Logf("rolling restart of 3 members under load: %d connections checked, %d moved, %d failed", checked.Load(), moved.Load(), failed.Load())
	if moved.Load() > 0 {
		t.Fatalf("%d connections reached another backend than their pin, e.g. %s", moved.Load(), movedSample.Load())
	}
	if checked.Load() < 100 {
		t.Fatalf("only %d connections checked: the load proves nothing", checked.Load())
	}
}

// A CAS killed under health checks: each of its clients is re-pinned by
// whichever member it reaches first, and that decision reaches the other
// members; afterwards every member sends each client to one backend, and
// no client of a live CAS moved.
func TestClusterCASKilled(t *testing.T) {
	f := newFleet(t, 3)
	const clients = 60
	before := map[string]string{}
	for c := range clients {
		src := lbtest.ClientIP(4000 + c)
		before[src] = mustWho(t, src, f.addr(c%3, 0))
	}
	for _, b := range f.bs {
		if b.Name == "cas1" {
			b.StopListening()
		}
	}
	after := map[string]string{}
	var last time.Time
	for c := range clients {
		src := lbtest.ClientIP(4000 + c)
		if before[src] != "cas1" {
			continue
		}
		after[src] = mustWho(t, src, f.addr(c%3, 1)) // a member that may not have seen cas1 fail yet
		last = time.Now()
	}
	if len(after) == 0 {
		t.Fatal("no client was on cas1; the test proves nothing")
	}
	lbtest.Eventually(t, 5*time.Second, "re-pins reaching every member", func() bool {
		for src, b := range after {
			for m := range 3 {
				if f.backend(m, src) != b {
					return false
				}
			}
		}
		return true
	})
	t.Logf("cas1 killed: %d clients re-pinned at whichever member they reached; every member held every re-pin %s after the last",
		len(after), time.Since(last).Round(time.Millisecond))
	maps.Copy(before, after)
	f.checkPins(before, "after cas1 was killed")
}

// Every member stops at once (a power cut of the whole cluster, or an
// upgrade done all at once) and starts again at once: each takes its
// pins back from its own snapshot, and no client moves, re-pinned ones
// included.
func TestClusterWholeRestart(t *testing.T) {
	f := startFleet(t, 3, t.TempDir())
	const clients = 40
	want := f.pinWithRepins(clients, 5000)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			f.members[i].Shutdown(ctx)
		})
	}
	wg.Wait()
	f.startAll(3)
	f.checkPins(want, "after the whole cluster restarted")
}

// Members stopped at once, as a whole-cluster stop or a host reboot does,
// each stop quickly and quietly: no ERROR line, and none waits out the
// leave timeout (5 s) for a peer that is stopping too.
func TestClusterStopTogetherQuickAndQuiet(t *testing.T) {
	f := newFleet(t, 3)
	took := make([]time.Duration, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			f.members[i].Shutdown(ctx)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, d := range took {
		logs := f.logs[i].String()
		if d > 2*time.Second || strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "not acknowledged") {
			t.Errorf("member %d took %v to stop together with the others:\n%s", i+1, d, logs)
		}
	}
	t.Logf("three members stopped at once in %v, %v, %v", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), took[2].Round(time.Millisecond))
}
