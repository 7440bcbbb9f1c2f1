package affinity

import (
	"fmt"
	"testing"
	"time"
)

// The table: 16k pins and the quota config gives it by default
// (max_entries / 16).
const (
	allocTable = 16384
	allocQuota = allocTable / 16
	allocLegit = 2000
	allocFlood = 2 * allocTable // new clients: enough to flush the table twice
)

// legitKey is the i-th of 2,000 clients of other allocations: half IPv4
// addresses spread over 64 /16s, half IPv6 hosts each of its own /48.
func legitKey(i int) Key {
	if i%2 == 0 {
		return key(fmt.Sprintf("10.%d.%d.1:1", i%64, i/64))
	}
	return key(fmt.Sprintf("[2001:db8:%x::1]:1", i))
}

// floodAlloc pins the 2,000 idle clients into a 16k table with the
// default quota, then pins allocFlood new clients named by flood (each
// connects and closes), and returns how many of the 2,000 lost their pin.
// The clock stands still: every pin is as old as every other, the case
// where eviction's sample of the oldest pins tells least, and the result
// is the same at every run (with a moving clock it was not, and CI saw
// TestNewClientsAfterAnAllocationFlood fail now and then).
func floodAlloc(t *testing.T, flood func(i int) Key) (*Table, int) {
	t.Helper()
	at := time.Unix(1_700_000_000, 0)
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: allocTable, Prefix: PrefixRule{Max: allocQuota}, Now: func() time.Time { return at }})
	for i := range allocLegit {
		pinIdle(t, tb, legitKey(i), "cas1")
	}
	for i := range allocFlood {
		l, err := tb.Acquire(flood(i), fixed("cas2"))
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
	}
	return tb, lostOf(tb)
}

// lostOf counts the 2,000 clients whose pin is gone or moved.
func lostOf(tb *Table) int {
	lost := 0
	for i := range allocLegit {
		if in, err := tb.Lookup(legitKey(i)); err != nil || in.Backend != "cas1" {
			lost++
		}
	}
	return lost
}

// The three sizes of one IPv6 customer's allocation, all inside
// 2001:db8:f000::/48, and an IPv4 /16.
var allocFloods = []struct {
	name string
	key  func(i int) Key
}{
	// 16 /64s of one /56: each /64 holds no more than its quota, but
	// together they could take the whole table.
	{"16x/64 of a /56", func(i int) Key { return key(fmt.Sprintf("[2001:db8:f000:%x::%x]:1", i%16, i/16+1)) }},
	// every /64 of one /56, a few clients each.
	{"one /56", func(i int) Key { return key(fmt.Sprintf("[2001:db8:f000:%x::%x]:1", i%256, i/256+1)) }},
	// one client in each of 32k /64s of one /48.
	{"one /48", func(i int) Key { return key(fmt.Sprintf("[2001:db8:f000:%x::1]:1", i)) }},
	// 32k addresses of one IPv4 /16, one pin each.
	{"one IPv4 /16", func(i int) Key { return key(fmt.Sprintf("10.77.%d.%d:1", i/256, i%256)) }},
}

// A flood from one allocation, at any of its sizes, evicts only its own
// pins: counted at the /56 and /48 as well as at the /64, the allocation
// holds more than its share once the table is full, and from then on each
// of its new clients may only take the place of one of its own pins.
// Before, the eviction's sample of the 8 least recently used pins held
// only the idle legitimate ones: 16 /64s of one /56 and one /56 took
// 1,109 of the 2,000, one /48 1,893 and one IPv4 /16 1,806.
func TestAllocationFloodEvictsOnlyItsOwn(t *testing.T) {
	for _, f := range allocFloods {
		t.Run(f.name, func(t *testing.T) {
			tb, lost := floodAlloc(t, f.key)
			st := tb.Stats()
			t.Logf("%s: %d of %d idle legitimate pins lost; stats %+v", f.name, lost, allocLegit, st)
			if lost != 0 {
				t.Fatalf("%d of %d legitimate pins lost to a flood from %s, want none", lost, allocLegit, f.name)
			}
			if tb.Len() != allocTable {
				t.Fatalf("%d pins, want the table full (%d): the flood may use the room no one else needs", tb.Len(), allocTable)
			}
		})
	}
}

// After such a flood, new clients of other allocations still pin, and
// take the flood's places rather than the older clients'.
func TestNewClientsAfterAnAllocationFlood(t *testing.T) {
	tb, _ := floodAlloc(t, allocFloods[2].key)
	for i := range 500 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.200.%d.%d:1", i/250, i%250)), fixed("cas3"))
		if l.Placement != New {
			t.Fatalf("new client %d after the flood: %v, want a new pin", i, l.Placement)
		}
		l.Release()
	}
	if lost := lostOf(tb); lost != 0 {
		t.Fatalf("500 new clients after the flood evicted %d of the older clients, want only the flood's pins", lost)
	}
}

// Where an ISP makes /56s of one /48, a flood from one /56 evicts only
// that /56's pins, not its neighbours': a new client over its share may
// take the place of a pin of its allocation at the narrowest size that is
// over (here the /56), though the whole /48 is over its share too.
func TestFloodOfOneSlash56SparesItsNeighbours(t *testing.T) {
	neighbour := func(i int) Key { return key(fmt.Sprintf("[2001:db8:f000:%x00::%x]:1", i%255+1, i/255+1)) }
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: allocTable, Prefix: PrefixRule{Max: allocQuota}})
	for i := range allocLegit {
		pinIdle(t, tb, neighbour(i), "cas1")
	}
	for i := range allocFlood {
		pinIdle(t, tb, allocFloods[1].key(i), "cas2") // the /56 2001:db8:f000::/56
	}
	lost := 0
	for i := range allocLegit {
		if in, err := tb.Lookup(neighbour(i)); err != nil || in.Backend != "cas1" {
			lost++
		}
	}
	if lost != 0 {
		t.Fatalf("a flood from one /56 took %d of the %d pins of the other /56s of its /48, want none", lost, allocLegit)
	}
}

// A site over its share (one IPv4 /16 holding a tenth of a full table)
// still pins its new clients, in the place of its own pins, and takes
// none of the other clients'.
func TestSiteOverItsShareStillPins(t *testing.T) {
	const site = allocTable / 10
	other := func(i int) Key { return key(fmt.Sprintf("11.%d.%d.1:1", i%200, i/200)) }
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: allocTable, Prefix: PrefixRule{Max: allocQuota}})
	for i := range allocTable - site {
		pinIdle(t, tb, other(i), "cas1")
	}
	for i := range site + 500 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.50.%d.%d:1", i/250, i%250)), fixed("cas2"))
		if l.Placement != New {
			t.Fatalf("client %d of the site: %v, want a new pin (stats %+v)", i, l.Placement, tb.Stats())
		}
		l.Release()
	}
	for i := range allocTable - site {
		if in, err := tb.Lookup(other(i)); err != nil || in.Backend != "cas1" {
			t.Fatalf("client %s of another allocation lost its pin to the site's", other(i))
		}
	}
}

// A peer's pins come in by the same rule: records of another member's
// flood from one /48 take the places of that flood's pins here, not of
// this member's idle clients.
func TestMergedFloodEvictsOnlyItsOwn(t *testing.T) {
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: allocTable, Prefix: PrefixRule{Max: allocQuota}})
	for i := range allocLegit {
		pinIdle(t, tb, legitKey(i), "cas1")
	}
	now := time.Now().Unix()
	for i := range allocFlood {
		tb.Merge(Record{Key: allocFloods[2].key(i), Backend: "cas2", Created: now, LastSeen: now, Version: tb.Clock().Now()})
	}
	if lost := lostOf(tb); lost != 0 {
		t.Fatalf("a peer's flood from one /48 took %d of %d pins here, want none", lost, allocLegit)
	}
}

// A flood over its share in a full table takes the places of its own
// pins without spending the rate cap: that cap bounds how fast others'
// pins can be pushed out, and replacing its own pushes out no one's. New
// clients of other allocations still pin while it goes on.
func TestAllocationFloodSparesTheRateCap(t *testing.T) {
	tb, _ := floodAlloc(t, allocFloods[2].key) // the table is full
	tb.SetNewPinRate(100)
	for i := range 2000 {
		pinIdle(t, tb, allocFloods[2].key(allocFlood+i), "cas2")
	}
	for i := range 50 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.201.0.%d:1", i)), fixed("cas3"))
		if l.Placement != New {
			t.Fatalf("new client %d of another allocation during the flood: %v, want a new pin (stats %+v)", i, l.Placement, tb.Stats())
		}
		l.Release()
	}
	if lost := lostOf(tb); lost != 0 {
		t.Fatalf("%d of the older clients' pins lost, want none", lost)
	}
}
