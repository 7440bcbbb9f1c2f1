package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, lbtest.IgnoreMemberlistProbes()...) }

// node is a member with one pool's table, on its own loopback address.
type node struct {
	m     *Member
	table *affinity.Table
	addr  string
	mu    sync.Mutex
	seen  []string // member events
}

// startNodes starts n members on 127.0.4.x with tables of maxPins, all
// listing each other as peers, and joins them.
func startNodes(tb testing.TB, n, maxPins int) []*node {
	tb.Helper()
	var addrs []string
	for i := range n {
		addrs = append(addrs, lbtest.FreeAddr(tb, fmt.Sprintf("127.0.4.%d", i+1)))
	}
	nodes := make([]*node, n)
	for i := range n {
		// Names are unique per call: a benchmark runs more than once
		// before its cleanups stop the earlier members.
		name := fmt.Sprintf("n%d", i+1)
		if seq := nodeSeq.Add(1); seq > int64(n) {
			name += fmt.Sprintf("-%d", seq)
		}
		nodes[i] = startNode(tb, name, addrs[i], addrs, maxPins)
	}
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			nd.m.Join(ctx)
		})
	}
	wg.Wait()
	return nodes
}

var nodeSeq atomic.Int64

func startNode(tb testing.TB, name, addr string, peers []string, maxPins int) *node {
	tb.Helper()
	return startNodeWith(tb, name, addr, peers, maxPins, nil, nil)
}

// latest publishes ps, as the server does.
func latest(ps ...affinity.Pins) *affinity.Latest {
	var l affinity.Latest
	l.Publish(ps)
	return &l
}

// startNodeWith is startNode for a pool whose backends are given, with
// the gossip keyring keys (none: unencrypted).
func startNodeWith(tb testing.TB, name, addr string, peers []string, maxPins int, backends []string, keys [][]byte) *node {
	tb.Helper()
	nd := &node{addr: addr}
	keyer := affinity.Keyer{}
	var member *Member
	nd.table = affinity.NewTable(affinity.Config{MaxEntries: maxPins, OnEvent: func(ev affinity.Event) {
		if member != nil {
			member.Note("cas", ev)
		}
	}})
	m, err := Start(Options{
		Config: config.Cluster{Bind: addr, BindAddr: netip.MustParseAddrPort(addr), AdvertiseAddr: netip.MustParseAddrPort(addr),
			Peers: peers, NodeName: name, SyncTimeout: config.Duration{Duration: 5 * time.Second},
			SyncInterval: config.Duration{Duration: time.Minute}, Keys: keys},
		Pins:     latest(affinity.Pins{Name: "cas", Table: nd.table, Keyer: keyer, Backends: backends}),
		OnMember: func(n, what string) { nd.mu.Lock(); nd.seen = append(nd.seen, n+" "+what); nd.mu.Unlock() },
	})
	if err != nil {
		tb.Fatal(err)
	}
	member = m
	nd.m = m
	tb.Cleanup(func() { m.Leave(time.Second) })
	return nd
}

func clientKey(i int) affinity.Key {
	return affinity.Keyer{}.Key(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 0))
}

func pinTo(backend string) affinity.Chooser {
	return func(affinity.Current) (string, affinity.RepinReason, error) { return backend, "", nil }
}

// Members see each other join and leave, and a pin made at one reaches
// the others.
func TestMembersShareAndTell(t *testing.T) {
	nodes := startNodes(t, 3, 1000)
	for _, nd := range nodes {
		if got := len(nd.m.Members()); got != 3 {
			t.Fatalf("%s sees %d members, want 3", nd.m.Name(), got)
		}
	}
	l, _ := nodes[0].table.Acquire(clientKey(1), pinTo("cas2"))
	l.Release()
	lbtest.Eventually(t, 5*time.Second, "the pin at n2 and n3", func() bool {
		a, _ := nodes[1].table.Lookup(clientKey(1))
		b, _ := nodes[2].table.Lookup(clientKey(1))
		return a.Backend == "cas2" && b.Backend == "cas2"
	})
	nodes[2].m.Leave(time.Second)
	left := nodes[2].m.Name() + " left" // names differ when the test runs again (-count)
	lbtest.Eventually(t, 5*time.Second, "n1 hearing that n3 left", func() bool {
		nodes[0].mu.Lock()
		defer nodes[0].mu.Unlock()
		return slices.Contains(nodes[0].seen, left)
	})
	if ms := nodes[0].m.Members(); len(ms) != 3 || ms[2].Name != nodes[2].m.Name() || ms[2].State != "left" {
		t.Fatalf("n1's members after n3 left: %+v", ms)
	}
}

// A member joining learns, with the whole table, which pins another
// member holds connections of: it must not expire them meanwhile.
func TestJoinCarriesHolds(t *testing.T) {
	addrs := []string{lbtest.FreeAddr(t, "127.0.4.31"), lbtest.FreeAddr(t, "127.0.4.32")}
	old := startNode(t, "holder", addrs[0], addrs[:1], 100)
	l, _ := old.table.Acquire(clientKey(7), pinTo("cas1")) // open, not released
	defer l.Release()
	joiner := startNode(t, "joiner", addrs[1], addrs, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !joiner.m.Join(ctx) {
		t.Fatal("join failed")
	}
	var held int64
	joiner.table.Records(func(r affinity.Record) bool { held = r.HeldUntil; return false })
	if held <= time.Now().Unix() {
		t.Fatalf("joiner's copy of a pin held open at its peer has hold %d; want one in the future", held)
	}
}

// A seed given by host name counts as present once a member answers at
// an address the name resolves to, so it is not rejoined every interval.
// localhost resolves from /etc/hosts, with no query leaving the host.
func TestSeedByNameNotMissing(t *testing.T) {
	a := lbtest.FreeAddr(t, "127.0.0.1")
	_, port, _ := net.SplitHostPort(a)
	first := startNode(t, "by-ip", a, nil, 100)
	second := startNode(t, "by-name", lbtest.FreeAddr(t, "127.0.4.9"), []string{"localhost:" + port}, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !second.m.Join(ctx) {
		t.Fatal("no join through a seed given by name")
	}
	lbtest.Eventually(t, 5*time.Second, "the first member alive at the second", func() bool { return len(second.m.peers()) == 1 })
	if miss := second.m.missing(); len(miss) != 0 {
		t.Fatalf("seeds %v counted missing while %s answers", miss, first.addr)
	}
}

// A pin taken from another member is admitted by the rule a snapshot's
// is: one naming a backend this member does not have is refused and
// counted as unknown, never stored (it would send the client nowhere);
// the others are taken.
func TestMergeRefusesUnknownBackend(t *testing.T) {
	addrs := []string{lbtest.FreeAddr(t, "127.0.4.21"), lbtest.FreeAddr(t, "127.0.4.22")}
	full := startNode(t, "full", addrs[0], addrs[:1], 100)
	partial := startNodeWith(t, "partial", addrs[1], addrs, 100, []string{"cas1", "cas2"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	partial.m.Join(ctx)
	for i, b := range []string{"cas3", "cas2"} {
		l, _ := full.table.Acquire(clientKey(i), pinTo(b))
		l.Release()
	}
	lbtest.Eventually(t, 5*time.Second, "the cas2 pin at the partial member", func() bool {
		in, _ := partial.table.Lookup(clientKey(1))
		return in.Backend == "cas2"
	})
	if in, err := partial.table.Lookup(clientKey(0)); err == nil {
		t.Fatalf("a pin to cas3, which the member lacks, was stored: %+v", in)
	}
	if partial.m.stats.Unknown.Load() == 0 {
		t.Fatal("the refused record was not counted")
	}
}

// Seeds that accept and never answer cannot hold a start past
// sync_timeout: Join gives up when its context ends (2s here), where
// memberlist's own join took 10s a seed (20s for two).
func TestJoinHonoursSyncTimeout(t *testing.T) {
	var hung []string
	var conns []net.Conn
	var listeners []net.Listener
	var mu sync.Mutex
	for i := range 2 {
		l, err := net.Listen("tcp", lbtest.FreeAddr(t, fmt.Sprintf("127.0.4.%d", 20+i)))
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c) // held, never answered
				mu.Unlock()
			}
		}()
		hung = append(hung, l.Addr().String())
	}
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		time.Sleep(300 * time.Millisecond) // the join left behind finds every seed closed
	}()
	addr := lbtest.FreeAddr(t, "127.0.4.30")
	nd := startNode(t, "lonely", addr, append([]string{addr}, hung...), 100)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if nd.m.Join(ctx) {
		t.Fatal("joined seeds that never answer")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Join took %v with a 2s sync timeout", took)
	}
	if !nd.m.Synced() {
		t.Fatal("not ready after giving up on the seeds")
	}
}
