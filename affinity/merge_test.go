package affinity

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// Stamps only grow: not when the wall clock steps back, and a decision
// made after hearing of another carries a larger stamp.
func TestClockNeverGoesBack(t *testing.T) {
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	hlc := NewClock(c.Now)
	a := hlc.Now()
	c.Add(-time.Hour) // the wall clock steps back
	if b := hlc.Now(); b <= a {
		t.Fatalf("stamp after the wall clock stepped back = %x, not after %x", b, a)
	}
	far := StampOf(c.Now().Add(time.Minute))
	hlc.Observe(far)
	if b := hlc.Now(); b <= far {
		t.Fatalf("stamp after observing %x = %x: a decision made after hearing of another must carry a larger stamp", far, b)
	}
}

// Two members decide one client differently; whichever order their
// records arrive in, both end with the same backend: the newer decision.
func TestMergeConvergesToNewest(t *testing.T) {
	k := key("10.0.0.7:1")
	for _, order := range []string{"a first", "b first"} {
		a, _, _ := newTable(t, time.Hour, 100)
		b, cb, _ := newTable(t, time.Hour, 100)
		la, _ := a.Acquire(k, fixed("cas1"))
		la.Release()
		cb.Add(time.Second)
		lb, _ := b.Acquire(k, fixed("cas2")) // b decides later: its stamp is larger
		lb.Release()
		ra, rb := export(a, k), export(b, k)
		if !Wins(rb.Version, rb.Backend, ra.Version, ra.Backend) {
			t.Fatalf("b's later decision %x does not beat a's %x", rb.Version, ra.Version)
		}
		var resA, resB MergeResult
		if order == "a first" {
			resB, resA = b.Merge(ra), a.Merge(rb)
		} else {
			resA, resB = a.Merge(rb), b.Merge(ra)
		}
		if resA.Outcome != Moved || !resA.Conflict || resB.Outcome != Kept || !resB.Conflict {
			t.Fatalf("%s: a %+v, b %+v; want a moved to b's pin and both to see the conflict", order, resA, resB)
		}
		for name, tb := range map[string]*Table{"a": a, "b": b} {
			if in, err := tb.Lookup(k); err != nil || in.Backend != "cas2" {
				t.Fatalf("%s: member %s has %+v, %v; want cas2, the newest decision", order, name, in, err)
			}
		}
	}
}

// Two decisions stamped alike are settled by the backend name, the same
// way on every member.
func TestWinsTieBrokenByBackendName(t *testing.T) {
	if !Wins(5, "cas1", 5, "cas2") || Wins(5, "cas2", 5, "cas1") {
		t.Fatal("equal stamps must be settled by the backend name, the same way on every member")
	}
}

// Records from many members in a random order leave every table with the
// winner of the rule, whatever the order.
func TestMergeOrderDoesNotMatter(t *testing.T) {
	k := key("10.0.0.9:1")
	recs := []Record{
		{Key: k, Backend: "cas1", Version: 100 << 16, Created: 1_700_000_000},
		{Key: k, Backend: "cas3", Version: 300 << 16, Created: 1_700_000_000},
		{Key: k, Backend: "cas2", Version: 300 << 16, Created: 1_700_000_000}, // ties cas3; cas2 sorts first
		{Key: k, Backend: "cas4", Version: 200 << 16, Created: 1_700_000_000},
	}
	for i := range 20 {
		tb, _, _ := newTable(t, time.Hour, 100)
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		for _, j := range rng.Perm(len(recs)) {
			tb.Merge(recs[j])
		}
		if in, _ := tb.Lookup(k); in.Backend != "cas2" {
			t.Fatalf("order %d: pinned to %q, want cas2", i, in.Backend)
		}
	}
}

// A connection open on the backend that loses a conflict is left alone,
// and counted; the client's next connection goes to the winner.
func TestMergeLeavesOpenConnectionsAlone(t *testing.T) {
	tb, _, evs := newTable(t, time.Hour, 100)
	k := key("10.0.0.3:1")
	l, _ := tb.Acquire(k, fixed("cas1"))
	res := tb.Merge(Record{Key: k, Backend: "cas2", Version: tb.Clock().Now() + 1, Created: 1_700_000_000})
	if res.Outcome != Moved || res.LeftOpen != 1 {
		t.Fatalf("merge = %+v; want moved with 1 connection left open", res)
	}
	if last := (*evs)[len(*evs)-1]; last.Kind != EventRepin || !last.Remote || last.From != "cas1" || last.Repin != RepinPeer {
		t.Fatalf("event = %+v; want a remote re-pin from cas1", last)
	}
	l.Release() // the old lease still releases cleanly
	in, _ := tb.Lookup(k)
	if in.Backend != "cas2" || in.Active != 0 {
		t.Fatalf("after release: %+v; want cas2 with nothing open", in)
	}
}

// A pin lives while any member holds a connection of its client, and
// expires ttl after the last close anywhere.
func TestLifetimeSpansMembers(t *testing.T) {
	tb, c, _ := newTable(t, time.Hour, 100)
	k := key("10.0.0.4:1")
	l, _ := tb.Acquire(k, fixed("cas1"))
	l.Release()
	r := export(tb, k)
	r.HeldUntil = c.Now().Add(3 * time.Hour).Unix() // another member has it open
	tb.Merge(r)
	c.Add(2 * time.Hour)
	if n := tb.Sweep(10); n != 0 {
		t.Fatalf("swept %d pins held open by another member", n)
	}
	r.LastSeen = c.Now().Unix() // that member's last close, now
	tb.Merge(r)
	c.Add(70 * time.Minute) // past the hold; 70 min after the last close anywhere
	if _, err := tb.Lookup(k); err != ErrNoPin {
		t.Fatalf("pin still there an hour after the last close anywhere: %v", err)
	}
	tb2, c2, _ := newTable(t, time.Hour, 100)
	tb2.Merge(Record{Key: k, Backend: "cas1", Version: 1 << 16, Created: c2.Now().Add(-2 * time.Hour).Unix(), LastSeen: c2.Now().Add(-61 * time.Minute).Unix()})
	if tb2.Len() != 0 {
		t.Fatal("merged a record that expired before it arrived")
	}
}

// A newer operator unpin from another member removes the pin; an older
// one does not.
func TestMergeUnpin(t *testing.T) {
	tb, _, _ := newTable(t, time.Hour, 100)
	k := key("10.0.0.5:1")
	l, _ := tb.Acquire(k, fixed("cas1"))
	l.Release()
	ver := export(tb, k).Version
	if res := tb.Merge(Record{Key: k, Version: ver - 1}); res.Outcome != Kept {
		t.Fatalf("older unpin: %+v; want kept", res)
	}
	if res := tb.Merge(Record{Key: k, Version: ver + 1}); res.Outcome != Dropped || tb.Len() != 0 {
		t.Fatalf("newer unpin: %+v with %d pins; want dropped", res, tb.Len())
	}
}

// A pin held open by another member is as busy as one held here: a full
// table does not evict it.
func TestHeldPinNotEvicted(t *testing.T) {
	tb, c, _ := newTable(t, time.Hour, 1)
	held := key("10.0.0.6:1")
	tb.Merge(Record{Key: held, Backend: "cas1", Version: 1 << 16, Created: c.Now().Unix(), HeldUntil: c.Now().Add(time.Hour).Unix()})
	l, _ := tb.Acquire(key("10.0.0.8:1"), fixed("cas2"))
	if l.Placement != Unpinned {
		t.Fatalf("new client in a full table of held pins: %v; want unpinned", l.Placement)
	}
	if _, err := tb.Lookup(held); err != nil {
		t.Fatalf("held pin evicted: %v", err)
	}
}

func export(tb *Table, k Key) Record {
	var out Record
	tb.Records(func(r Record) bool {
		if r.Key == k {
			out = r
		}
		return true
	})
	return out
}

// allRecords is every record tb would send in a whole-table exchange.
func allRecords(tb *Table) []Record {
	var out []Record
	tb.Records(func(r Record) bool { out = append(out, r); return true })
	return out
}

// An operator unpins a client while member b is away. When b returns,
// the two exchange whole tables: b's older pin does not come back at a,
// and b drops it. Past a TTL the unpin is forgotten.
func TestUnpinOutlivesAnAbsentMember(t *testing.T) {
	k := key("10.0.0.9:1")
	a, ca, _ := newTable(t, time.Hour, 100)
	b, _, _ := newTable(t, time.Hour, 100)
	l, _ := a.Acquire(k, fixed("cas1"))
	l.Release()
	b.Merge(export(a, k)) // b learns the pin, then goes away
	ca.Add(time.Second)
	if n := a.Delete(func(in Record) bool { return in.Key == k }); n != 1 {
		t.Fatalf("deleted %d pins, want 1", n)
	}
	fromA, fromB := allRecords(a), allRecords(b)
	for _, r := range fromB {
		if res := a.Merge(r); res.Outcome != Declined {
			t.Fatalf("a merging b's older pin: %+v, want it declined", res)
		}
	}
	for _, r := range fromA {
		b.Merge(r)
	}
	for name, tb := range map[string]*Table{"a": a, "b": b} {
		if in, err := tb.Lookup(k); err == nil {
			t.Fatalf("member %s has %+v after the exchange; the operator unpinned it", name, in)
		}
	}
	ca.Add(2 * time.Hour)
	if rs := allRecords(a); len(rs) != 0 {
		t.Fatalf("a still sends %+v two TTLs after the unpin", rs)
	}
	old := fromB[0]
	old.LastSeen = ca.Now().Unix() // still in use at b, so not expired by itself
	if res := a.Merge(old); res.Outcome == Declined {
		t.Fatalf("a pin stamped before an unpin forgotten is still declined: %+v", res)
	}
}

// Backend names are numbered in 16 bits: past 65,535 a record or a pin
// naming a new backend is refused (the table served such a client
// unpinned), where the numbers wrapped and pins landed on the wrong
// backend. That numbering them all is linear, where it was quadratic
// (32,900 names cost 41.5 s), is BenchmarkBackendNames's to show: a
// wall-clock bound here failed on a loaded machine (14 s for 65,535
// names beside a go build and two busy loops).
func TestBackendNamesBounded(t *testing.T) {
	tb := NewTable(Config{MaxEntries: 70_000})
	k := func(i int) Key {
		return Keyer{}.Key(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 0))
	}
	for i := range maxNames {
		if res := tb.Merge(Record{Key: k(i), Backend: fmt.Sprintf("b%d", i), Version: 1, Created: time.Now().Unix()}); res.Outcome != Added {
			t.Fatalf("record %d: %v", i, res.Outcome)
		}
	}
	if res := tb.Merge(Record{Key: k(maxNames), Backend: "one-too-many", Version: 1, Created: time.Now().Unix()}); res.Outcome != Declined {
		t.Fatalf("a record naming backend %d: %v, want Declined", maxNames+1, res.Outcome)
	}
	l, err := tb.Acquire(k(maxNames+1), func(Current) (string, RepinReason, error) { return "another-new-one", "", nil })
	if err != nil || l.Backend != "another-new-one" || l.Placement == New {
		t.Fatalf("a new client to a backend past the bound: %+v, %v; want served unpinned", l, err)
	}
	l.Release()
	if in, _ := tb.Lookup(k(65000)); in.Backend != "b65000" {
		t.Fatalf("client 65000 is pinned to %q, want b65000", in.Backend)
	}
}
