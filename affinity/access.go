package affinity

import "time"

// What the table offers besides Acquire: lookups and walks for the admin
// API, deletions by an operator, and putting pins back from a snapshot
// or journal at start-up.

// Lookup returns the pin of client k without touching it.
func (t *Table) Lookup(k Key) (Record, error) {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peek(k)
	if !ok || t.isExpired(p, t.now().UnixNano()) {
		return Record{}, ErrNoPin
	}
	return t.record(k, p), nil
}

// Range calls f with a copy of every live pin, shard by shard, until f
// returns false; unlike Records, no unpin records.
func (t *Table) Range(f func(Record) bool) { walk(t, t.record, f) }

// walk calls f with every live pin as conv makes it, shard by shard,
// until f returns false. Each shard is copied under its lock and f runs
// outside it.
func walk[T any](t *Table, conv func(Key, pin) T, f func(T) bool) {
	now := t.now().UnixNano()
	var out []T
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		out = out[:0]
		for _, k := range s.keys() {
			if p, _ := s.peek(k); !t.isExpired(p, now) {
				out = append(out, conv(k, p))
			}
		}
		s.mu.Unlock()
		for _, v := range out {
			if !f(v) {
				return
			}
		}
	}
}

// Delete removes the pins for which match returns true and returns how
// many it removed. Open connections are not touched; their clients are
// balanced afresh on their next connection.
func (t *Table) Delete(match func(Record) bool) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		var evs events
		s.mu.Lock()
		for _, k := range s.keys() {
			p, _ := s.peek(k)
			if match(t.record(k, p)) {
				// An operator's unpin is a decision of its own, which a
				// cluster passes on like a re-pin.
				p.ver = t.clock.Now()
				t.unpin(s, k, p, Deleted, &evs)
				t.bury(k, p.ver)
				n++
			}
		}
		s.mu.Unlock()
		t.emit(&evs)
	}
	return n
}

// Insert puts a pin read back from a snapshot, if the client has none,
// and reports whether it did: not when the client already has a pin, nor
// when the table is full. It reports no event: nothing changed for the
// client. The record keeps everything a pin is: backend, home, creation,
// last close and stamp.
func (t *Table) Insert(r Record) bool {
	s := t.shard(r.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.peek(r.Key); ok || s.len() >= s.max || !t.numbered(r.Backend, r.Home) {
		return false
	}
	t.putRead(s, r)
	return true
}

// putRead stores a pin read back from a file; the shard's lock is held.
func (t *Table) putRead(s *shard, r Record) {
	id := t.intern(r.Backend)
	ver := r.Version
	if ver == 0 {
		ver = StampOf(time.Unix(r.Created, 0))
	}
	t.clock.Observe(ver)
	p := pin{backend: id, created: uint32(r.Created), released: uint32(r.LastSeen), gen: t.nextGen(), ver: ver}
	if r.Home != "" && r.Home != r.Backend {
		p.home = t.intern(r.Home) + 1
	}
	s.put(r.Key, p)
	t.added(s, r.Key, id)
}

// Replace puts a pin as a journal recorded it, replacing the client's pin
// if it has one, and reports whether it did (not when the table is full).
// Like Insert it reports no event, and it is for start-up: a replaced
// pin's open connections are not carried over.
func (t *Table) Replace(r Record) bool {
	if !t.numbered(r.Backend, r.Home) {
		return false
	}
	s := t.shard(r.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.peek(r.Key); ok {
		s.remove(r.Key)
		t.removed(r.Key, p.backend)
	} else if s.len() >= s.max {
		return false
	}
	t.putRead(s, r)
	return true
}

// Forget removes client k's pin, as a journal recorded its unpin, and
// reports whether there was one. It reports no event.
func (t *Table) Forget(k Key) bool {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peek(k)
	if !ok {
		return false
	}
	s.remove(k)
	t.removed(k, p.backend)
	return true
}

// Counts returns the number of pins of each backend that has any. It
// reads counters kept as pins come and go, so it costs the same at a
// million pins as at ten; expired pins not yet swept count, as in Len.
func (t *Table) Counts() map[string]int {
	names, counts := *t.names.Load(), *t.counts.Load()
	out := make(map[string]int, len(names))
	for i := range min(len(names), len(counts)) {
		if n := counts[i].Load(); n > 0 {
			out[names[i]] = int(n)
		}
	}
	return out
}

// Cap returns the number of pins the table can hold (max_entries,
// rounded up to a whole number per shard).
func (t *Table) Cap() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.max
		s.mu.Unlock()
	}
	return n
}

// Len returns the number of pins held, expired ones not yet swept included.
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.len()
		s.mu.Unlock()
	}
	return n
}

// Stats returns the running totals.
func (t *Table) Stats() Stats {
	return Stats{Hits: t.hits.Load(), Misses: t.misses.Load(), Pins: t.pins.Load(),
		Repins: t.repins.Load(), Expired: t.expired.Load(), Evicted: t.evicted.Load(),
		EvictedActive: t.evictedActive.Load(), Deleted: t.deleted.Load(), Full: t.full.Load(), Throttled: t.throttled.Load(), PrefixFull: t.prefixFulls.Load()}
}
