package affinity

import "time"

// What a cluster needs of the table: pins as records other members can
// merge, and the merge itself. A record carries the decision (backend,
// home and the stamp of when it was made) and the client's lifetime as
// one member knows it (last close, and how long its connections there
// are known to stay open).

// Record is a client's pin as members of a cluster exchange it.
type Record struct {
	Key Key
	// Backend is the pinned backend; "" says an operator unpinned the
	// client at Version.
	Backend string
	Home    string
	Version uint64
	Created int64 // unix seconds
	// LastSeen is the unix second of the client's last close at the sender;
	// 0 if none closed there.
	LastSeen int64
	// HeldUntil is a unix second until which the sender has connections
	// of the client open (it repeats the record before then while they
	// stay open); 0 for none.
	HeldUntil int64
	// Active is the sender's own count of the client's open connections,
	// for reports; the table never reads it.
	Active int32
}

// CreatedAt is when the pin was made.
func (r Record) CreatedAt() time.Time { return time.Unix(r.Created, 0) }

// Seen is the pin's last activity as the admin API shows it: its last
// close, or its making while none has closed.
func (r Record) Seen() time.Time { return time.Unix(max(r.LastSeen, r.Created), 0) }

// Admit checks a pin read back from a snapshot, a journal or another
// member of a cluster before it enters a table of this keyer: the key
// must be of the keyer's kind and, but for an unpin (Backend ""), has
// must know the backend. A home has does not know is dropped, so failback
// never aims at a backend that is gone. Snapshot, journal and cluster all
// come through here, so a pin is read back by one rule.
func (k Keyer) Admit(r Record, has func(backend string) bool) (Record, bool) {
	if !k.Makes(r.Key) || (r.Backend != "" && !has(r.Backend)) {
		return Record{}, false
	}
	if r.Home != "" && !has(r.Home) {
		r.Home = ""
	}
	return r, true
}

// Wins says whether a decision stamped ver for backend beats one stamped
// other for otherBackend: the newer stamp wins, and of two equal stamps
// (two members deciding in the same instant) the backend name that sorts
// first. Every member applies the same rule to the same two records, so
// all of them end with the same pin.
func Wins(ver uint64, backend string, other uint64, otherBackend string) bool {
	if ver != other {
		return ver > other
	}
	return backend < otherBackend
}

// Outcome says what Merge did with a record.
type Outcome uint8

const (
	Kept     Outcome = iota // the table's own decision stays (same or newer); lifetimes merged
	Added                   // the client had no pin here; the record's is now its pin
	Moved                   // the record's newer decision replaced the pin
	Dropped                 // the record's newer unpin removed the pin
	Declined                // expired, the table full of busy pins, or its allocation over its share (prefixes)
)

// MergeResult is what Merge did.
type MergeResult struct {
	Outcome Outcome
	// Conflict says the two decisions named different backends; the rule
	// of Wins chose between them.
	Conflict bool
	// LeftOpen is how many connections stay open on the backend that lost
	// a conflict: they are left alone, and the client's next connection
	// goes to the winner.
	LeftOpen int32
}

// Merge applies a record from another member: the decision by the rule of
// Wins, and the lifetime always (the later close, the longer hold). It
// reports the changes it makes as events with Remote set.
func (t *Table) Merge(r Record) MergeResult {
	if !t.numbered(r.Backend, r.Home) {
		return MergeResult{Outcome: Declined}
	}
	t.clock.Observe(r.Version)
	s := t.shard(r.Key)
	now := t.now().UnixNano()
	var evs events
	s.mu.Lock()
	p, ok := s.peek(r.Key)
	if ok && t.isExpired(p, now) {
		t.unpin(s, r.Key, p, Expired, &evs)
		ok = false
	}
	var res MergeResult
	if ok {
		res = t.mergeInto(s, r, p, &evs)
	} else {
		res = t.mergeNew(s, r, now, &evs)
	}
	s.mu.Unlock()
	t.emit(&evs)
	return res
}

// mergeNew adds the record of a client with no pin here, unless it is an
// unpin or has expired; the shard's lock is held.
func (t *Table) mergeNew(s *shard, r Record, now int64, evs *events) MergeResult {
	p := pin{created: uint32(r.Created), released: uint32(r.LastSeen), held: uint32(r.HeldUntil), ver: r.Version}
	if r.Backend == "" {
		t.bury(r.Key, r.Version)
		return MergeResult{Outcome: Kept}
	}
	if t.graves.buries(r.Key, r.Version, r.Backend, now/int64(time.Second)) {
		return MergeResult{Outcome: Declined}
	}
	p.backend = t.intern(r.Backend)
	if t.isExpired(p, now) {
		return MergeResult{Outcome: Declined}
	}
	// The rule of a new client's pin: a peer's flood takes the place of
	// its own pins here too.
	v, _, why := t.room(s, r.Key, now, false)
	if why != nil {
		return MergeResult{Outcome: Declined}
	}
	t.evict(s, v, evs)
	if r.Home != "" {
		p.home = t.intern(r.Home) + 1
	}
	p.gen = t.nextGen()
	t.added(s, r.Key, p.backend)
	s.put(r.Key, p)
	ev := t.event(EventPin, r.Key, p, "", "")
	ev.Remote = true
	evs.add(ev)
	return MergeResult{Outcome: Added}
}

// mergeInto merges the record of a client pinned here; the shard's lock
// is held.
func (t *Table) mergeInto(s *shard, r Record, p pin, evs *events) MergeResult {
	p.released = max(p.released, uint32(r.LastSeen))
	p.held = max(p.held, uint32(r.HeldUntil))
	ours := t.name(p.backend)
	res := MergeResult{Conflict: r.Backend != ours && r.Version != p.ver}
	switch {
	case !Wins(r.Version, r.Backend, p.ver, ours):
		res.Outcome = Kept
		s.put(r.Key, p)
	case r.Backend == "":
		res.Outcome, res.Conflict = Dropped, false
		p.ver = r.Version
		t.unpin(s, r.Key, p, Deleted, evs)
		evs.last().Remote = true
		t.bury(r.Key, r.Version)
	default:
		p.home = 0
		if r.Home != "" {
			p.home = t.intern(r.Home) + 1
		}
		p.ver = r.Version
		if r.Backend == ours { // the same decision, made again later
			res.Outcome = Kept
			s.put(r.Key, p)
			break
		}
		res.Outcome, res.LeftOpen = Moved, p.active
		t.count(p.backend).Add(-1)
		p.backend = t.intern(r.Backend)
		t.count(p.backend).Add(1)
		s.put(r.Key, p)
		ev := t.event(EventRepin, r.Key, p, ours, RepinPeer)
		ev.Remote = true
		evs.add(ev)
	}
	return res
}

// Records calls f with every live pin as a record, shard by shard, then
// with every operator unpin of the last TTL as an unpin record, until f
// returns false; f runs outside the table's locks. HeldUntil is the
// longest hold other members reported; Open is the client's connections
// here.
func (t *Table) Records(f func(Record) bool) {
	more := true
	walk(t, t.record, func(r Record) bool { more = f(r); return more })
	if !more {
		return
	}
	for k, ver := range t.graves.live(t.now().Unix()) {
		if !f(Record{Key: k, Version: ver}) {
			return
		}
	}
}

// bury remembers the unpin of k stamped ver for a TTL.
func (t *Table) bury(k Key, ver uint64) {
	t.graves.dig(k, ver, t.now().Unix()+t.ttl.Load()/int64(time.Second))
}

func (t *Table) record(k Key, p pin) Record {
	return Record{Key: k, Backend: t.name(p.backend), Home: t.homeName(p), Version: p.ver,
		Created: int64(p.created), LastSeen: int64(p.released), HeldUntil: int64(p.held), Active: p.active}
}

// Clock returns the clock that stamps the table's decisions.
func (t *Table) Clock() *Clock { return t.clock }
