package affinity

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// floodKey is the i-th client of one IPv6 /64.
func floodKey(i int) Key {
	return Keyer{}.Key(netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:0:7::%x]:1", i+1)))
}

// pinIdle pins k to backend and closes its connection.
func pinIdle(t *testing.T, tb *Table, k Key, backend string) {
	t.Helper()
	l, err := tb.Acquire(k, fixed(backend))
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
}

// flood pins one idle IPv4 client, then 2,500 new clients of one IPv6
// /64, and checks the first client kept its pin.
func flood(t *testing.T, tb *Table) {
	t.Helper()
	home := key("10.9.9.9:1")
	pinIdle(t, tb, home, "cas1")
	for i := range 2500 {
		pinIdle(t, tb, floodKey(i), "cas2")
	}
	if in, err := tb.Lookup(home); err != nil || in.Backend != "cas1" {
		t.Fatalf("the idle client's pin after the flood: %+v, %v; want it kept on cas1", in, err)
	}
}

// The flood: 2,500 new clients from one IPv6 /64 into a table
// that holds 2,000 evicted another client's idle pin and moved it. With
// the prefix quota the /64 holds its quota and no more: its further
// clients go unpinned, nobody is evicted, and the flood stops taking the
// new pins other clients need (the quota is checked before the rate cap).
func TestFloodFromOnePrefixEvictsNobody(t *testing.T) {
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: 2000, NewPinsPerSecond: 1000, Prefix: PrefixRule{Max: 125}})
	flood(t, tb)
	st := tb.Stats()
	if st.Pins != 126 || st.PrefixFull != 2500-125 || st.Evicted != 0 || st.Throttled != 0 {
		t.Fatalf("stats %+v; want 126 pins (125 of the /64), %d unpinned for the quota, none evicted or throttled", st, 2500-125)
	}
	// The flood took 125 of the second's 1,000 new pins: 800 clients of
	// other prefixes still pin at once.
	for i := range 800 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.8.%d.%d:1", i/200, i%200)), fixed("cas3"))
		if l.Placement != New {
			t.Fatalf("client %d of other prefixes after the flood: %v, want a new pin (throttled %d)", i, l.Placement, tb.Stats().Throttled)
		}
		l.Release()
	}
}

// Without a quota, a full table evicts the flood's own pins before an
// older client's: of the least recently used pins it looks at, the one
// whose prefix holds the most. Plain LRU evicted the older client first.
func TestFullTableEvictsTheFloodingPrefix(t *testing.T) {
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: 2000})
	flood(t, tb)
	if st := tb.Stats(); st.Evicted != 501 {
		t.Fatalf("%d evicted, want 501 (all of the flood)", st.Evicted)
	}
}

// Two addresses of one /64 count as one prefix, of two /64s as two; an
// IPv4 /32 is one address. Changing the lengths recounts the pins held.
func TestPrefixCounts(t *testing.T) {
	tb := NewTable(Config{TTL: time.Hour, MaxEntries: 1000, Prefix: PrefixRule{Max: 2}})
	for _, a := range []string{"[2001:db8::1]:1", "[2001:db8::2]:1", "[2001:db8:0:1::1]:1", "10.0.0.1:1", "10.0.0.2:1"} {
		pinIdle(t, tb, key(a), "cas1")
	}
	if l, _ := tb.Acquire(key("[2001:db8::3]:1"), fixed("cas1")); l.Placement != Unpinned {
		t.Fatalf("a third client of a /64 holding 2 pins: %v, want unpinned", l.Placement)
	}
	if l, _ := tb.Acquire(key("10.0.0.3:1"), fixed("cas1")); l.Placement != New {
		t.Fatalf("a third IPv4 address: %v, want a new pin", l.Placement)
	}
	tb.SetPrefixRule(PrefixRule{V4: 24, Max: 3}) // 10.0.0.0/24 now holds 3
	if l, _ := tb.Acquire(key("10.0.0.4:1"), fixed("cas1")); l.Placement != Unpinned {
		t.Fatalf("a fourth address of a /24 holding 3 pins: %v, want unpinned", l.Placement)
	}
	tb.Forget(key("10.0.0.1:1"))
	if l, _ := tb.Acquire(key("10.0.0.4:1"), fixed("cas1")); l.Placement != New {
		t.Fatalf("after an unpin the /24 has room: %v, want a new pin", l.Placement)
	}
}

// Every way a pin comes or goes keeps the prefix counts, at every level:
// after pins made by Acquire, Insert, Replace and Merge, and removed by
// eviction, expiry, Forget, Delete, Replace, a shrinking Resize and a
// peer's unpin, the counts match the pins held, and are all zero once
// none is.
func TestPrefixCountsFollowEveryPath(t *testing.T) {
	tb, c, _ := newTable(t, time.Hour, 64)
	now := c.Now().Unix()
	for i := range 80 { // 16 evicted
		pinIdle(t, tb, key(fmt.Sprintf("10.1.%d.%d:1", i/8, i)), "cas1")
	}
	for i := range 10 {
		tb.Forget(key(fmt.Sprintf("10.1.%d.%d:1", (79-i)/8, 79-i)))
		tb.Insert(Record{Key: key(fmt.Sprintf("10.2.0.%d:1", i)), Backend: "cas2", Created: now, LastSeen: now})
		tb.Replace(Record{Key: key(fmt.Sprintf("10.2.0.%d:1", i)), Backend: "cas3", Created: now, LastSeen: now, Version: 1})
		tb.Merge(Record{Key: key(fmt.Sprintf("10.3.0.%d:1", i)), Backend: "cas1", Created: now, LastSeen: now, Version: tb.Clock().Now()})
	}
	tb.Merge(Record{Key: key("10.3.0.1:1"), Version: tb.Clock().Now()}) // a peer's unpin
	tb.Delete(func(in Record) bool { return in.Backend == "cas3" })
	tb.Resize(32)
	check := func(when string) {
		t.Helper()
		pc := tb.prefixes.Load()
		for l := range prefixLevels {
			held := map[uint64]int32{}
			tb.Records(func(r Record) bool {
				if r.Backend != "" {
					held[pc.hash(r.Key, l)]++
				}
				return true
			})
			var sum int64
			for r := range pc.levels[l] {
				for i := range pc.levels[l][r] {
					sum += int64(pc.levels[l][r][i].Load())
				}
			}
			if want := int64(tb.Len()) * int64(len(pc.levels[l])); sum != want {
				t.Fatalf("%s: level %d's sketch holds %d counts, want %d (%d pins in %d rows)", when, l, sum, want, tb.Len(), len(pc.levels[l]))
			}
			for h, n := range held {
				if got := pc.count(l, h); got < n {
					t.Fatalf("%s: a level %d prefix with %d pins counted %d", when, l, n, got)
				}
			}
		}
	}
	check("after every path")
	c.Add(2 * time.Hour)
	tb.Sweep(1 << 20)
	if tb.Len() != 0 {
		t.Fatalf("%d pins after every TTL passed", tb.Len())
	}
	check("after expiry")
}
