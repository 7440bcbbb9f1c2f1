package affinity

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/stickylb/stickylb/config"
)

// ErrNoPin is returned by lookups for a client the table does not hold.
var ErrNoPin = errors.New("no pin for this client")

// pin is one client's entry, kept by value inside the LRU's own entry so a
// pin costs no allocation of its own: backend names are interned to small
// numbers and times are whole seconds. Everything in it is guarded by its
// shard's lock.
type pin struct {
	backend  uint16 // interned name
	home     uint16 // interned name + 1; 0: none (see Current.Home)
	active   int32
	created  uint32 // unix seconds
	released uint32 // unix seconds of the last close; 0 while never released
	gen      uint32 // tells a re-created pin from the one a lease holds
	// held is the unix second until which another member of a cluster
	// has said it has connections of this client open; 0 without one.
	held uint32
	ver  uint64 // the Clock's stamp of the decision that made or moved it
}

// last is the pin's last activity: its last close, or its creation while
// none has closed.
func (p pin) last() uint32 {
	if p.released == 0 {
		return p.created
	}
	return p.released
}

// Lease is a connection's hold on a pin. Release it exactly once when the
// connection closes.
type Lease struct {
	t         *Table
	shard     *shard
	key       Key
	gen       uint32 // 0: holds nothing
	Backend   string
	Placement Placement
	Repin     RepinReason // for Repin, why the pin moved
}

// Config sets a table up. The zero value of each field means its default.
type Config struct {
	// TTL is how long a pin outlives its client's last connection;
	// 0 means config.DefaultTTL.
	TTL time.Duration
	// MaxEntries bounds the table; 0 means config.DefaultMaxEntries.
	MaxEntries int
	// NewPinsPerSecond caps the pins made for new clients; a client over
	// the cap is balanced without a pin. 0 sets no cap.
	NewPinsPerSecond float64
	// Prefix bounds the pins one client prefix may hold; its zero value
	// sets no quota.
	Prefix PrefixRule
	// OnEvent, if set, is called for every change, outside the table's
	// locks and on the goroutine that made the change. Keep it quick.
	OnEvent func(Event)
	// Now is the clock; default time.Now. Tests move it.
	Now func() time.Time
	// Clock stamps decisions; default a new Clock reading Now.
	Clock *Clock
}

// Stats are running totals since the table was made.
type Stats struct {
	Hits, Misses, Pins, Repins, Expired, Evicted, EvictedActive, Deleted uint64
	// Full counts new clients left unpinned because every pin looked at
	// had connections open; Throttled those over NewPinsPerSecond;
	// PrefixFull those whose prefix held its quota (PrefixRule), or
	// whose allocation held its share of a full table and had no idle
	// pin of its own to give up (prefixes).
	Full, Throttled, PrefixFull uint64
}

// Table is a bounded, sharded map from client to pinned backend.
type Table struct {
	shards  []shard
	mask    uint64
	ttl     atomic.Int64
	onEvent func(Event)
	now     func() time.Time
	clock   *Clock
	gen     atomic.Uint32

	// names is read on every connection and written only when a backend
	// name is seen for the first time, so readers load a snapshot without
	// a lock and writers copy it.
	names   atomic.Pointer[[]string]
	counts  atomic.Pointer[[]*atomic.Int64] // pins per interned name, same index
	namesMu sync.Mutex                      // serialises writers
	ids     sync.Map                        // name -> uint16

	graves graves // operator unpins, for members that were away

	hits, misses, pins, repins, expired, evicted, evictedActive, deleted, full, throttled, prefixFulls atomic.Uint64
	prefixes                                                                                           atomic.Pointer[prefixes]
	newPins                                                                                            atomic.Pointer[rate.Limiter] // nil: no cap
}

// evictScan bounds how many busy pins an insert into a full shard steps
// over looking for an idle one to evict.
const evictScan = 8

// NewTable makes an empty table.
func NewTable(c Config) *Table {
	if c.TTL <= 0 {
		c.TTL = config.DefaultTTL
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = config.DefaultMaxEntries
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Clock == nil {
		c.Clock = NewClock(c.Now)
	}
	// Shards cut lock contention; a small table keeps one shard so that
	// its bound and its LRU order are exact.
	n := 1
	for n < 64 && c.MaxEntries/(n*2) >= 4096 {
		n *= 2
	}
	t := &Table{shards: make([]shard, n), mask: uint64(n - 1), onEvent: c.OnEvent, now: c.Now, clock: c.Clock}
	t.names.Store(&[]string{})
	t.counts.Store(&[]*atomic.Int64{})
	t.ttl.Store(int64(c.TTL))
	t.Resize(c.MaxEntries)
	t.SetNewPinRate(c.NewPinsPerSecond)
	t.SetPrefixRule(c.Prefix)
	return t
}

// SetNewPinRate changes the cap on pins made per second; 0 removes it.
func (t *Table) SetNewPinRate(perSecond float64) {
	if perSecond <= 0 {
		t.newPins.Store(nil)
		return
	}
	if l := t.newPins.Load(); l != nil {
		l.SetLimit(rate.Limit(perSecond))
		l.SetBurst(max(1, int(perSecond)))
		return
	}
	t.newPins.Store(rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond))))
}

// mayPin says whether the cap on new pins lets one more be made now.
func (t *Table) mayPin() bool {
	l := t.newPins.Load()
	return l == nil || l.Allow()
}

// SetTTL changes the TTL; it applies to every pin, old and new.
func (t *Table) SetTTL(d time.Duration) {
	if d > 0 {
		t.ttl.Store(int64(d))
	}
}

// TTL returns the current TTL.
func (t *Table) TTL() time.Duration { return time.Duration(t.ttl.Load()) }

func (t *Table) shard(k Key) *shard {
	return &t.shards[k.Hash()&t.mask]
}

func (t *Table) name(id uint16) string { return (*t.names.Load())[id] }

// count is the number of pins of the backend numbered id, kept as pins
// come and go so that reading it walks nothing.
func (t *Table) count(id uint16) *atomic.Int64 { return (*t.counts.Load())[id] }

func (t *Table) homeName(p pin) string {
	if p.home == 0 {
		return ""
	}
	return t.name(p.home - 1)
}

func secs(ns int64) uint32 { return uint32(ns / int64(time.Second)) }

// nextGen numbers a new pin; 0 is kept for "no pin".
func (t *Table) nextGen() uint32 {
	for {
		if g := t.gen.Add(1); g != 0 {
			return g
		}
	}
}

// isExpired says whether p's client has had no connection, here or at
// another member, for longer than the TTL.
func (t *Table) isExpired(p pin, now int64) bool {
	sec := now / int64(time.Second)
	if p.active > 0 || sec <= int64(p.held) {
		return false
	}
	return sec-int64(p.last()) > int64(t.ttl.Load()/int64(time.Second))
}

// busy says whether p has connections open here or at another member, so
// that neither eviction nor expiry may take it.
func (p pin) busy(now int64) bool {
	return p.active > 0 || now/int64(time.Second) <= int64(p.held)
}

// Acquire returns the lease for a new connection of client k. The backend
// is decided atomically: concurrent calls for one key see one pin.
func (t *Table) Acquire(k Key, choose Chooser) (Lease, error) {
	s := t.shard(k)
	now := t.now().UnixNano()
	var evs events

	s.mu.Lock()
	p, ok := s.peek(k) // put below moves it to the front
	if ok && t.isExpired(p, now) {
		t.unpin(s, k, p, Expired, &evs)
		ok = false
	}
	var cur Current
	if ok {
		cur = Current{Backend: t.name(p.backend), Home: t.homeName(p), Active: p.active}
	}
	pinned := cur.Backend
	backend, why, err := choose(cur)
	if err != nil {
		s.mu.Unlock()
		t.emit(&evs)
		return Lease{}, err
	}
	l := Lease{t: t, shard: s, key: k, Backend: backend}
	if backend != pinned && !t.numbered(backend) {
		// A name past the bound: served, not pinned (never reached with
		// the backends of a config). A hit needs no number.
		return t.unpinned(s, k, backend, EventFull, &t.full, &evs), nil
	}
	switch {
	case ok && backend == pinned:
		l.Placement = Hit
		t.hits.Add(1)
	case ok:
		t.repin(&p, backend, why)
		l.Placement, l.Repin = Repin, why
		evs.add(t.event(EventRepin, k, p, pinned, why))
	case t.prefixFull(k):
		// Before the rate cap, so a flood from one prefix stops taking
		// the new pins other clients need once it holds its quota.
		return t.unpinned(s, k, backend, EventPrefixFull, &t.prefixFulls, &evs), nil
	default:
		v, kind, why := t.room(s, k, now, true)
		if why != nil {
			return t.unpinned(s, k, backend, kind, why, &evs), nil
		}
		t.evict(s, v, &evs)
		t.misses.Add(1)
		t.pins.Add(1)
		p = pin{backend: t.intern(backend), created: secs(now), gen: t.nextGen(), ver: t.clock.Now()}
		t.added(s, k, p.backend)
		l.Placement = New
		evs.add(t.event(EventPin, k, p, "", ""))
	}
	p.active++
	l.gen = p.gen
	s.put(k, p)
	s.mu.Unlock()
	t.emit(&evs)
	return l, nil
}

// repin moves p to backend, keeping the backend it was first moved off
// as its home for failback (a failback clears it).
func (t *Table) repin(p *pin, backend string, why RepinReason) {
	switch {
	case why == RepinFailback:
		p.home = 0
	case p.home == 0:
		p.home = p.backend + 1
	}
	t.count(p.backend).Add(-1)
	p.backend = t.intern(backend)
	t.count(p.backend).Add(1)
	p.ver = t.clock.Now()
	t.repins.Add(1)
}

// unpinned lets a new client through to backend without a pin, counted
// in why and reported as kind; it releases the shard's lock.
func (t *Table) unpinned(s *shard, k Key, backend string, kind EventKind, why *atomic.Uint64, evs *events) Lease {
	t.misses.Add(1)
	why.Add(1)
	s.mu.Unlock()
	evs.add(Event{Kind: kind, Key: k, Backend: backend})
	t.emit(evs)
	return Lease{Backend: backend, Placement: Unpinned}
}

// unpin removes k's pin p from s, counts it by reason and queues its
// event. An evicted pin with connections open is counted apart: the table
// is too small for the clients connected right now.
func (t *Table) unpin(s *shard, k Key, p pin, why UnpinReason, evs *events) {
	s.remove(k)
	t.removed(k, p.backend)
	switch why {
	case Expired:
		t.expired.Add(1)
	case Evicted:
		t.evicted.Add(1)
		if p.active > 0 {
			t.evictedActive.Add(1)
		}
	case Deleted:
		t.deleted.Add(1)
	}
	ev := t.event(EventUnpin, k, p, "", "")
	ev.Unpin = why
	evs.add(ev)
}

// Release ends a lease. The pin's TTL starts counting when its last lease
// is released. A lease whose pin was evicted (or evicted and made anew)
// changes nothing.
func (l *Lease) Release() {
	if l.gen == 0 {
		return
	}
	t, s := l.t, l.shard
	now := secs(t.now().UnixNano())
	s.mu.Lock()
	if p, ok := s.peek(l.key); ok && p.gen == l.gen {
		p.active--
		p.released = now
		// Add moves the pin to the front, so LRU order follows last
		// activity and Sweep can stop at the first idle pin that has
		// not expired.
		s.put(l.key, p)
	}
	s.mu.Unlock()
	l.gen = 0
}

// Sweep removes expired pins, looking at no more than budget entries per
// shard, and returns how many it removed. Expired pins are also dropped
// lazily by Acquire; Sweep is what frees their memory and reports them.
func (t *Table) Sweep(budget int) int {
	now := t.now().UnixNano()
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		var evs events
		s.mu.Lock()
		for j := 0; j < budget; j++ {
			k, p, ok := s.oldest()
			if !ok {
				break
			}
			if p.busy(now) {
				s.get(k)
				continue
			}
			if !t.isExpired(p, now) {
				break
			}
			t.unpin(s, k, p, Expired, &evs)
			n++
		}
		s.mu.Unlock()
		t.emit(&evs)
	}
	return n
}

// Resize changes the bound. Shrinking evicts least recently used pins,
// busy or not: the bound is a promise about memory.
func (t *Table) Resize(max int) {
	if max <= 0 {
		return
	}
	per := (max + len(t.shards) - 1) / len(t.shards)
	for i := range t.shards {
		s := &t.shards[i]
		var evs events
		s.mu.Lock()
		for s.v4 != nil && s.len() > per { // a new table's shards are empty
			k, p, _ := s.oldest()
			t.unpin(s, k, p, Evicted, &evs)
		}
		s.size(per)
		s.mu.Unlock()
		t.emit(&evs)
	}
}
