package cluster

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/stickylb/stickylb/affinity"
)

// senderEntries counts what m keeps per sender name: the roster's
// members, their goodbyes and their shares (a clock is a field of its
// member's entry).
func senderEntries(m *Member) int {
	m.others.mu.Lock()
	defer m.others.mu.Unlock()
	n := len(m.others.nodes)
	for _, e := range m.others.nodes {
		if e.bye {
			n++
		}
		if e.share != nil {
			n++
		}
	}
	return n
}

// floodNames sends n goodbyes and n batches of changes, each under a
// sender name of its own that no member goes by, through the receive
// path; the names are long (200 bytes), as an attacker's would be.
func floodNames(m *Member, round, n int) {
	now := time.Now()
	pad := strings.Repeat("x", 200)
	for i := range n {
		name := fmt.Sprintf("%s-%d-%d", pad, round, i)
		m.receive(append([]byte{wireVersion, kindBye}, name...))
		e := entry{pool: "cas", rec: affinity.Record{Key: clientKey(i % 500), Backend: "cas1", Version: affinity.StampOf(now), Created: now.Unix()}}
		m.receive(enc(kindChanges, header{sent: now.Unix(), from: name}, []entry{e}))
	}
}

// Names a sender gives itself cost this member nothing it keeps: 3
// rounds of 20,000 goodbyes and 20,000 batches, each under a new name,
// leave no more per-sender state than the members the roster knows
// (one took a member from 20 to 706 MB, held, before); a member's
// own goodbye and clock are still noted.
func TestInventedSendersKeepNothing(t *testing.T) {
	nodes := startNodes(t, 2, 1000)
	m, peer := nodes[0].m, nodes[1].m
	base := senderEntries(m)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for round := range 3 {
		floodNames(m, round, 20_000)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	got := senderEntries(m)
	t.Logf("60,000 goodbyes and 60,000 batches under invented names: per-sender entries %d -> %d, heap %d -> %d MB",
		base, got, before.HeapAlloc>>20, after.HeapAlloc>>20)
	if got > base+4 {
		t.Fatalf("per-sender entries grew from %d to %d under invented names", base, got)
	}
	// Each message is counted: as a stranger's, or as over the one
	// allowance strangers share.
	if n := m.stats.Strangers.Load() + m.stats.Throttled.Load(); n < 120_000 {
		t.Fatalf("%d of 120,000 messages from invented senders counted", n)
	}
	now := time.Now()
	m.receive(enc(kindChanges, header{sent: now.Unix() + 30, from: peer.Name()}, nil))
	for _, mi := range m.Members() {
		if mi.Name == peer.Name() && (mi.ClockOffset < 25 || mi.ClockOffset > 35) {
			t.Fatalf("the peer's clock offset reads %ds, want 30", mi.ClockOffset)
		}
	}
}

// Members that left take their state with them: of 1,000 members that
// joined, talked, said goodbye and left, the roster keeps at most
// maxDeparted, and none keeps a share or a goodbye.
func TestDepartedMembersPruned(t *testing.T) {
	nodes := startNodes(t, 1, 1000)
	m := nodes[0].m
	ev := (*events)(m)
	now := time.Now()
	for i := range 1000 {
		n := &memberlist.Node{Name: fmt.Sprintf("gone-%d", i), Addr: net.IPv4(127, 0, 0, 1), Port: 9}
		ev.NotifyJoin(n)
		m.receive(enc(kindChanges, header{sent: now.Unix(), from: n.Name}, nil))
		m.receive(append([]byte{wireVersion, kindBye}, n.Name...))
		ev.NotifyLeave(n)
	}
	got := senderEntries(m)
	t.Logf("1,000 members joined, talked and left: per-sender entries %d", got)
	if got > 300 {
		t.Fatalf("%d per-sender entries kept for 1,000 members that left", got)
	}
}
