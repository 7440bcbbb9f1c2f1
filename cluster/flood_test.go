package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// A flood of idle connections to the gossip port takes few of this
// member's descriptors: from one address at most 8 are kept (the rest
// are closed at once and counted) and the cluster goes on sharing pins;
// from many addresses at most 64 in all.
func TestGossipStreamsBounded(t *testing.T) {
	nodes := startNodes(t, 2, 1000)
	flood := func(sources int) []net.Conn {
		var idle []net.Conn
		for i := range 200 {
			c, err := lbtest.Dial(fmt.Sprintf("127.0.5.%d", i%sources+1), netip.MustParseAddrPort(nodes[0].addr))
			if err != nil {
				t.Fatal(err)
			}
			idle = append(idle, c)
		}
		return idle
	}
	closeAll := func(cs []net.Conn) {
		for _, c := range cs {
			c.Close()
		}
	}
	idle := flood(1)
	lbtest.Eventually(t, 5*time.Second, "streams of one address over 8 refused", func() bool {
		return nodes[0].m.stats.StreamsRefused.Load() >= 200-maxStreamsPerSource
	})
	l, _ := nodes[1].table.Acquire(clientKey(7), pinTo("cas3"))
	l.Release()
	lbtest.Eventually(t, 5*time.Second, "the pin shared despite the flood", func() bool {
		in, _ := nodes[0].table.Lookup(clientKey(7))
		return in.Backend == "cas3"
	})
	fromOne := nodes[0].m.stats.StreamsRefused.Load()
	closeAll(idle)
	idle = flood(20)
	defer closeAll(idle)
	lbtest.Eventually(t, 15*time.Second, "streams over 64 refused", func() bool {
		return nodes[0].m.stats.StreamsRefused.Load()-fromOne >= 200-maxStreams
	})
	t.Logf("200 idle connections from one address: %d refused, pins still shared; 200 from 20 addresses: %d refused",
		fromOne, nodes[0].m.stats.StreamsRefused.Load()-fromOne)
}

// One member, even with the key, cannot make this one merge without
// bound: 10,000 valid batches at once from one sender are cut to its
// share (the rest dropped and counted), while another member's batch
// still lands.
func TestMemberShareBounded(t *testing.T) {
	nodes := startNodes(t, 2, 100_000)
	now := time.Now()
	for i := range 10_000 {
		e := entry{pool: "cas", rec: affinity.Record{Key: clientKey(1000 + i), Backend: "cas1", Version: affinity.StampOf(now), Created: now.Unix()}}
		nodes[0].m.receive(enc(kindChanges, header{sent: now.Unix(), from: "flooder"}, []entry{e}))
	}
	thr := nodes[0].m.stats.Throttled.Load()
	if thr == 0 || thr > 10_000-2*changesPerSecond+500 {
		t.Fatalf("%d of 10,000 batches from one member dropped; want all but its burst of %d", thr, 2*changesPerSecond)
	}
	e := entry{pool: "cas", rec: affinity.Record{Key: clientKey(99), Backend: "cas2", Version: affinity.StampOf(now), Created: now.Unix()}}
	nodes[0].m.receive(enc(kindChanges, header{sent: now.Unix(), from: nodes[1].m.Name()}, []entry{e}))
	if in, _ := nodes[0].table.Lookup(clientKey(99)); in.Backend != "cas2" {
		t.Fatal("another member's batch was dropped with the flooder's")
	}
	t.Logf("10,000 batches from one member: %d dropped", thr)
}
