package affinity

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func key(s string) Key { return Keyer{}.Key(netip.MustParseAddrPort(s)) }

// fixed chooses backend for a client with no pin and keeps any pin.
func fixed(backend string) Chooser {
	return func(cur Current) (string, RepinReason, error) {
		if cur.Backend != "" {
			return cur.Backend, "", nil
		}
		return backend, "", nil
	}
}

func newTable(t *testing.T, ttl time.Duration, max int) (*Table, *clock, *[]Event) {
	t.Helper()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	var mu sync.Mutex
	evs := &[]Event{}
	tb := NewTable(Config{TTL: ttl, MaxEntries: max, Now: c.Now, OnEvent: func(e Event) {
		mu.Lock()
		*evs = append(*evs, e)
		mu.Unlock()
	}})
	return tb, c, evs
}

// A pin never expires while its client has a connection open, however
// long, and expires a TTL after the last one closes.
func TestPinNeverExpiresWhileConnectionOpen(t *testing.T) {
	tb, c, _ := newTable(t, time.Hour, 100)
	k := key("10.0.0.1:5000")
	l, err := tb.Acquire(k, fixed("cas1"))
	if err != nil || l.Placement != New || l.Backend != "cas1" {
		t.Fatalf("first acquire = %+v, %v; want new pin to cas1", l, err)
	}
	// Ten hours with the connection open: the pin stays.
	c.Add(10 * time.Hour)
	if got := tb.Sweep(100); got != 0 {
		t.Fatalf("sweep removed %d pins of a client with an open connection", got)
	}
	l2, _ := tb.Acquire(k, fixed("cas2"))
	if l2.Placement != Hit || l2.Backend != "cas1" {
		t.Fatalf("after 10h open: %v to %s, want hit on cas1", l2.Placement, l2.Backend)
	}
	l2.Release()
	l.Release()
	// TTL counts from the last close.
	c.Add(59 * time.Minute)
	if _, err := tb.Lookup(k); err != nil {
		t.Fatalf("59m after last close the pin is gone: %v", err)
	}
	c.Add(2 * time.Minute)
	if _, err := tb.Lookup(k); !errors.Is(err, ErrNoPin) {
		t.Fatalf("61m after last close (ttl 1h) lookup err = %v, want ErrNoPin", err)
	}
	l3, _ := tb.Acquire(k, fixed("cas2"))
	if l3.Placement != New || l3.Backend != "cas2" {
		t.Fatalf("after expiry: %v to %s, want a new pin to cas2", l3.Placement, l3.Backend)
	}
	l3.Release()
	if s := tb.Stats(); s.Expired != 1 || s.Pins != 2 || s.Hits != 1 {
		t.Fatalf("stats = %+v, want 1 expired, 2 pins, 1 hit", s)
	}
}

// A client that comes back within the TTL keeps its pin however long it
// has been pinned.
func TestReuseRefreshesTTL(t *testing.T) {
	tb, c, _ := newTable(t, time.Hour, 100)
	k := key("10.0.0.1:1")
	for range 5 {
		l, _ := tb.Acquire(k, fixed("cas1"))
		l.Release()
		c.Add(50 * time.Minute)
	}
	l, _ := tb.Acquire(k, fixed("cas9"))
	defer l.Release()
	if l.Backend != "cas1" {
		t.Fatalf("a client reconnecting every 50m (ttl 1h) moved to %s", l.Backend)
	}
}

// A sweep removes the expired idle pins, keeps the busy ones, and reports
// each removal.
func TestSweepRemovesExpiredAndReports(t *testing.T) {
	tb, c, evs := newTable(t, time.Minute, 100)
	for i := range 10 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.0.0.%d:1", i+1)), fixed("cas1"))
		if i%2 == 0 {
			l.Release()
		}
	}
	c.Add(2 * time.Minute)
	if n := tb.Sweep(100); n != 5 {
		t.Fatalf("sweep removed %d, want the 5 released pins", n)
	}
	if tb.Len() != 5 {
		t.Fatalf("len = %d, want 5 busy pins left", tb.Len())
	}
	unpins := 0
	for _, e := range *evs {
		if e.Kind == EventUnpin && e.Unpin == Expired {
			unpins++
		}
	}
	if unpins != 5 {
		t.Fatalf("%d expired unpin events, want 5", unpins)
	}
}

// A full table evicts its least recently used idle pin, never a busy one,
// and reports it.
func TestEvictionPrefersIdleAndIsReported(t *testing.T) {
	tb, _, evs := newTable(t, time.Hour, 3)
	busy, _ := tb.Acquire(key("10.0.0.1:1"), fixed("cas1")) // oldest, stays open
	for _, a := range []string{"10.0.0.2:1", "10.0.0.3:1"} {
		l, _ := tb.Acquire(key(a), fixed("cas1"))
		l.Release()
	}
	l, _ := tb.Acquire(key("10.0.0.4:1"), fixed("cas2"))
	l.Release()
	if tb.Len() != 3 {
		t.Fatalf("len = %d, want the bound 3", tb.Len())
	}
	if _, err := tb.Lookup(key("10.0.0.1:1")); err != nil {
		t.Fatalf("the busy pin was evicted although idle ones were there")
	}
	if _, err := tb.Lookup(key("10.0.0.2:1")); err == nil {
		t.Fatalf("the least recently used idle pin was kept")
	}
	last := (*evs)[len(*evs)-2]
	if last.Kind != EventUnpin || last.Unpin != Evicted || last.Key != key("10.0.0.2:1") {
		t.Fatalf("event before the new pin = %+v, want unpin evicted 10.0.0.2", last)
	}
	if s := tb.Stats(); s.Evicted != 1 || s.EvictedActive != 0 {
		t.Fatalf("stats = %+v, want 1 eviction of an idle pin", s)
	}
	busy.Release()
}

// A pin with connections open is never evicted: when every pin is busy a
// new client goes unpinned (counted, reported), and the busy clients keep
// their pins.
func TestBusyPinsAreNeverEvicted(t *testing.T) {
	tb, _, evs := newTable(t, time.Hour, 2)
	var ls []Lease
	for i := range 2 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.0.1.%d:1", i+1)), fixed("cas1"))
		ls = append(ls, l)
	}
	l, err := tb.Acquire(key("10.0.1.3:1"), fixed("cas2"))
	if err != nil || l.Placement != Unpinned || l.Backend != "cas2" {
		t.Fatalf("third client: %+v, %v; want cas2, unpinned", l, err)
	}
	l.Release() // a lease without a pin releases nothing
	for i := range 2 {
		if in, err := tb.Lookup(key(fmt.Sprintf("10.0.1.%d:1", i+1))); err != nil || in.Active != 1 {
			t.Fatalf("busy client %d lost its pin: %+v %v", i+1, in, err)
		}
	}
	if s := tb.Stats(); s.Full != 1 || s.Evicted != 0 || tb.Len() != 2 {
		t.Fatalf("stats %+v len %d; want 1 full, 0 evicted, 2 pins", s, tb.Len())
	}
	if last := (*evs)[len(*evs)-1]; last.Kind != EventFull {
		t.Fatalf("last event %+v, want a full event", last)
	}
	for i := range ls {
		ls[i].Release()
	}
}

// Parallel first connections of one client all get the one pin the first
// decided, even with a chooser that would give each a different backend.
func TestParallelFirstConnectionsShareOnePin(t *testing.T) {
	tb, _, evs := newTable(t, time.Hour, 1000)
	k := key("10.9.9.9:1")
	var n atomic.Int32
	// A chooser that would give every caller a different backend: only
	// the table's atomicity keeps them together.
	choose := func(cur Current) (string, RepinReason, error) {
		if cur.Backend != "" {
			return cur.Backend, "", nil
		}
		return fmt.Sprintf("cas%d", n.Add(1)), "", nil
	}
	const conns = 64
	got := make([]string, conns)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l, err := tb.Acquire(k, choose)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = l.Backend
			l.Release()
		}()
	}
	close(start)
	wg.Wait()
	for i, b := range got {
		if b != got[0] {
			t.Fatalf("connection %d went to %s, connection 0 to %s", i, b, got[0])
		}
	}
	pins := 0
	for _, e := range *evs {
		if e.Kind == EventPin {
			pins++
		}
	}
	if pins != 1 {
		t.Fatalf("%d pin events for one client, want 1", pins)
	}
}

// A chooser can move a pin, which is reported as a re-pin, or refuse,
// which changes nothing.
func TestRepinAndRefusal(t *testing.T) {
	tb, _, evs := newTable(t, time.Hour, 10)
	k := key("10.0.0.1:1")
	l, _ := tb.Acquire(k, fixed("cas1"))
	l.Release()
	l, err := tb.Acquire(k, func(Current) (string, RepinReason, error) { return "cas2", "down", nil })
	if err != nil || l.Placement != Repin || l.Repin != RepinDown || l.Backend != "cas2" {
		t.Fatalf("repin = %+v, %v", l, err)
	}
	l.Release()
	e := (*evs)[len(*evs)-1]
	if e.Kind != EventRepin || e.From != "cas1" || e.Backend != "cas2" || e.Repin != RepinDown {
		t.Fatalf("repin event = %+v", e)
	}
	boom := errors.New("all down")
	if _, err := tb.Acquire(k, func(Current) (string, RepinReason, error) { return "", "", boom }); !errors.Is(err, boom) {
		t.Fatalf("chooser error not returned: %v", err)
	}
	if in, _ := tb.Lookup(k); in.Backend != "cas2" || in.Active != 0 {
		t.Fatalf("a refused acquire changed the pin: %+v", in)
	}
}

// Delete removes the pins it matches, Range sees the rest, and an
// inserted pin can be looked up.
func TestDeleteRestoreRange(t *testing.T) {
	tb, _, _ := newTable(t, time.Hour, 100)
	for i := range 6 {
		b := "cas1"
		if i%2 == 1 {
			b = "cas2"
		}
		l, _ := tb.Acquire(key(fmt.Sprintf("10.0.0.%d:1", i+1)), fixed(b))
		l.Release()
	}
	if n := tb.Delete(func(in Record) bool { return in.Backend == "cas2" }); n != 3 {
		t.Fatalf("deleted %d, want 3", n)
	}
	var seen []Record
	tb.Range(func(in Record) bool { seen = append(seen, in); return true })
	if len(seen) != 3 {
		t.Fatalf("range saw %d pins, want 3", len(seen))
	}
	tb.Insert(Record{Key: key("10.0.0.2:1"), Backend: "cas3", Created: 1_700_000_000, LastSeen: 1_700_000_000})
	if in, err := tb.Lookup(key("10.0.0.2:1")); err != nil || in.Backend != "cas3" {
		t.Fatalf("restored pin = %+v, %v", in, err)
	}
}

// Shrinking a table evicts down to the new bound and counts the
// evictions.
func TestResizeShrinks(t *testing.T) {
	tb, _, _ := newTable(t, time.Hour, 100)
	for i := range 50 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.0.0.%d:1", i+1)), fixed("cas1"))
		l.Release()
	}
	tb.Resize(10)
	if tb.Len() != 10 {
		t.Fatalf("len after resize = %d, want 10", tb.Len())
	}
	if s := tb.Stats(); s.Evicted != 40 {
		t.Fatalf("evicted = %d, want 40", s.Evicted)
	}
}

// A pin moved off its backend remembers it as home until a failback.
func TestHomeForFailback(t *testing.T) {
	tb, _, _ := newTable(t, time.Hour, 10)
	k := key("10.0.0.1:1")
	move := func(to string, reason RepinReason) Current {
		var seen Current
		l, err := tb.Acquire(k, func(cur Current) (string, RepinReason, error) { seen = cur; return to, reason, nil })
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		return seen
	}
	move("cas1", "")
	if cur := move("cas2", "down"); cur.Backend != "cas1" || cur.Home != "" {
		t.Fatalf("before the first move: %+v", cur)
	}
	if cur := move("cas3", "down"); cur.Home != "cas1" {
		t.Fatalf("home after moves = %q, want the first backend left, cas1", cur.Home)
	}
	if cur := move("cas1", RepinFailback); cur.Home != "cas1" || cur.Backend != "cas3" {
		t.Fatalf("before failback: %+v", cur)
	}
	if cur := move("cas1", ""); cur.Home != "" || cur.Backend != "cas1" {
		t.Fatalf("after failback: %+v, want home cleared", cur)
	}
}

// A lease whose pin was deleted (or evicted by a shrink) and then made
// anew for the same client must not count against the new pin.
func TestStaleLeaseAfterDelete(t *testing.T) {
	tb, _, _ := newTable(t, time.Hour, 1)
	a := key("10.0.0.1:1")
	old, _ := tb.Acquire(a, fixed("cas1"))
	tb.Delete(func(in Record) bool { return in.Key == a }) // an operator unpins a busy client
	fresh, _ := tb.Acquire(a, fixed("cas2"))               // a's pin made anew
	old.Release()
	in, err := tb.Lookup(a)
	if err != nil || in.Active != 1 || in.Backend != "cas2" {
		t.Fatalf("after a stale release: %+v %v; want the new pin with its one connection", in, err)
	}
	fresh.Release()
	if in, _ := tb.Lookup(a); in.Active != 0 {
		t.Fatalf("active = %d after every lease was released", in.Active)
	}
}

// IPv4 and IPv6 pins are kept in two LRUs; the bound and the eviction
// order must span both.
func TestEvictionOrderSpansBothAddressFamilies(t *testing.T) {
	for _, oldest := range []string{"[2001:db8::1]:1", "10.0.0.1:1"} {
		tb, c, _ := newTable(t, time.Hour, 3)
		others := []string{"10.0.0.2:1", "[2001:db8::2]:1"}
		for _, a := range append([]string{oldest}, others...) {
			l, _ := tb.Acquire(key(a), fixed("cas1"))
			l.Release()
			c.Add(time.Second)
		}
		l, _ := tb.Acquire(key("10.0.0.9:1"), fixed("cas1"))
		l.Release()
		if tb.Len() != 3 {
			t.Fatalf("len = %d, want the bound 3", tb.Len())
		}
		if _, err := tb.Lookup(key(oldest)); err == nil {
			t.Errorf("oldest pin %s was kept", oldest)
		}
		for _, a := range others {
			if _, err := tb.Lookup(key(a)); err != nil {
				t.Errorf("newer pin %s was evicted before the oldest %s", a, oldest)
			}
		}
	}
}

// Insert says whether it kept a pin: not into a full table, nor over a
// client's existing pin.
func TestInsertReportsWhatItKept(t *testing.T) {
	tb := NewTable(Config{MaxEntries: 1})
	in := Record{Key: key("10.0.0.1:1"), Backend: "cas1", Created: time.Now().Unix(), LastSeen: time.Now().Unix()}
	if !tb.Insert(in) {
		t.Fatal("the first pin was not restored")
	}
	if tb.Insert(in) {
		t.Error("a pin restored over the client's own")
	}
	in.Key = key("10.0.0.2:1")
	if tb.Insert(in) || tb.Len() != 1 {
		t.Errorf("a pin restored into a full table (len %d)", tb.Len())
	}
}

// Per-backend counts follow every change (pin, re-pin, unpin, restore,
// set, forget) without a walk; pages from any cursor list every pin once
// in a quiet table.
func TestCountsAndPages(t *testing.T) {
	tb, _, _ := newTable(t, time.Hour, 100_000)
	for i := range 9000 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.%d.%d.1:1", i/250, i%250)), fixed([]string{"cas1", "cas2", "cas3"}[i%3]))
		l.Release()
	}
	k := key("10.0.0.1:1") // pinned to cas1
	l, _ := tb.Acquire(k, func(Current) (string, RepinReason, error) { return "cas2", RepinDown, nil })
	l.Release()
	tb.Forget(key("10.0.1.1:1"))
	tb.Replace(Record{Key: key("10.0.2.1:1"), Backend: "cas3", Created: 1_700_000_000, LastSeen: 1_700_000_000})
	tb.Delete(func(in Record) bool { return in.Key == key("10.0.3.1:1") })
	want := map[string]int{}
	tb.Range(func(in Record) bool { want[in.Backend]++; return true })
	if got := tb.Counts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counts %v, a walk finds %v", got, want)
	}
	seen := map[Key]int{}
	c, pages := Cursor{}, 0
	for done := false; !done; pages++ {
		var page []Record
		page, c, done = tb.Page(c, 700, nil)
		if len(page) > 700 {
			t.Fatalf("page of %d", len(page))
		}
		for _, in := range page {
			seen[in.Key]++
		}
		if back, err := ParseCursor(c.String()); err != nil || back != c {
			t.Fatalf("cursor %v does not read back: %v %v", c, back, err)
		}
	}
	if len(seen) != tb.Len() {
		t.Fatalf("pages listed %d pins of %d", len(seen), tb.Len())
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%v listed %d times", k, n)
		}
	}
	if c := tb.CursorAt(tb.Len() - 1); c.Shard >= len(tb.shards) {
		t.Fatalf("cursor of the last pin is past the end: %v", c)
	}
}

// A cap on new pins per second leaves clients beyond it unpinned (counted,
// reported) and does not touch clients that have pins.
func TestNewPinCap(t *testing.T) {
	tb := NewTable(Config{NewPinsPerSecond: 5})
	for i := range 5 {
		l, _ := tb.Acquire(key(fmt.Sprintf("10.0.4.%d:1", i+1)), fixed("cas1"))
		if l.Placement != New {
			t.Fatalf("client %d within the cap: %v", i+1, l.Placement)
		}
		l.Release()
	}
	if l, _ := tb.Acquire(key("10.0.4.9:1"), fixed("cas1")); l.Placement != Unpinned {
		t.Fatalf("client over the cap: %v, want unpinned", l.Placement)
	}
	if l, _ := tb.Acquire(key("10.0.4.1:1"), fixed("cas2")); l.Placement != Hit || l.Backend != "cas1" {
		t.Fatalf("a pinned client over the cap: %v %s, want a hit on cas1", l.Placement, l.Backend)
	}
	if s := tb.Stats(); s.Throttled != 1 || tb.Len() != 5 {
		t.Fatalf("stats %+v, len %d", s, tb.Len())
	}
}
