package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a member with one pool's table, on its own loopback address.
type node struct {
	m     *Member
	table *affinity.Table
	addr  string
	mu    sync.Mutex
	seen  []string // member events
}

func freeAddr(tb testing.TB, host string) string {
	tb.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr
		}
	}
	tb.Fatal("no port free for TCP and UDP")
	return ""
}

// startNodes starts n members on 127.0.4.x with tables of maxPins, all
// listing each other as peers, and joins them.
func startNodes(tb testing.TB, n, maxPins int) []*node {
	tb.Helper()
	var addrs []string
	for i := range n {
		addrs = append(addrs, freeAddr(tb, fmt.Sprintf("127.0.4.%d", i+1)))
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
	nd := &node{addr: addr}
	keyer := affinity.Keyer{}
	var member *Member
	nd.table = affinity.NewTable(affinity.Config{MaxEntries: maxPins, OnEvent: func(ev affinity.Event) {
		if member != nil {
			member.Note("cas", ev)
		}
	}})
	m, err := Start(Options{
		Config: config.Cluster{Bind: addr, Peers: peers, NodeName: name, SyncTimeout: config.Duration{Duration: 5 * time.Second},
			SyncInterval: config.Duration{Duration: time.Minute}},
		Pools:    func() map[string]Pool { return map[string]Pool{"cas": {Table: nd.table, Keyer: keyer}} },
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

func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Members see each other join and leave, and a pin made at one reaches
// the others.
func TestMembersShareAndTell(t *testing.T) {
	nodes := startNodes(t, 3, 1000)
	for _, nd := range nodes {
		if got := nd.m.Alive(); got != 3 {
			t.Fatalf("%s sees %d members alive, want 3", nd.m.Name(), got)
		}
	}
	l, _ := nodes[0].table.Acquire(clientKey(1), pinTo("cas2"))
	l.Release()
	waitFor(t, 5*time.Second, "the pin at n2 and n3", func() bool {
		a, _ := nodes[1].table.Lookup(clientKey(1))
		b, _ := nodes[2].table.Lookup(clientKey(1))
		return a.Backend == "cas2" && b.Backend == "cas2"
	})
	nodes[2].m.Leave(time.Second)
	waitFor(t, 5*time.Second, "n1 hearing that n3 left", func() bool {
		nodes[0].mu.Lock()
		defer nodes[0].mu.Unlock()
		for _, s := range nodes[0].seen {
			if s == "n3 left" {
				return true
			}
		}
		return false
	})
}
