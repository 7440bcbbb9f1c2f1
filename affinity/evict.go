package affinity

import "sync/atomic"

// victim is the idle pin that makes room for a new one; ok is false when
// the shard has room without an eviction.
type victim struct {
	key Key
	pin pin
	ok  bool
}

// room finds room in s for a new pin of k, or says why there is none: the
// counter of the refusal and its event. A shard with room needs no
// victim. In a full one, k's allocation over its share (prefixes) may
// only take the place of one of its own pins, and is refused, counted as
// the prefix's like the quota's, when it finds none. Taking the place of
// its own pin pushes out no one else's, which is what the rate cap
// (capped: NewPinsPerSecond) is for, so it is not capped and spends none
// of the new pins other clients need: a flood churning its own pins does
// not starve them. Any other client meets the cap first, as before
// allocations were counted, which spares a throttled flood the look for
// a victim; when every pin looked at has connections open, the table is
// too small for the clients connected now, and k goes unpinned rather
// than taking a live session's pin. The shard's lock is held; room evicts
// nothing, so no pin is lost for a refusal.
func (t *Table) room(s *shard, k Key, now int64, capped bool) (victim, EventKind, *atomic.Uint64) {
	full := s.len() >= s.max
	c := t.prefixes.Load()
	own := -1
	if full {
		own = c.narrowestOver(k)
	}
	switch {
	case own >= 0:
		if v := t.pick(c, s, k, own, now); v.ok {
			return v, 0, nil
		}
		return victim{}, EventPrefixFull, &t.prefixFulls
	case capped && !t.mayPin():
		return victim{}, EventThrottled, &t.throttled
	case !full:
		return victim{}, 0, nil
	}
	if v := t.pick(c, s, k, own, now); v.ok {
		return v, 0, nil
	}
	return victim{}, EventFull, &t.full
}

// pick chooses the pin to evict for k among the evictScan least
// recently used pins of s: an idle one, and when own >= 0 one of k's
// prefix at level own. Of those it takes the one over its share at the
// most levels, then the one whose prefix (level 0) holds the most pins,
// then the least recently used: a flood loses its own pins before a
// client's that merely connected earlier. The pins looked at are marked
// used, so the next look is at the next ones. A pin with connections
// open is never evicted: that would split a live session.
func (t *Table) pick(c *prefixes, s *shard, k Key, own int, now int64) victim {
	var mine uint64
	if own >= 0 {
		mine = c.hash(k, own)
	}
	var (
		v    victim
		most int64 = -1
	)
	s.scan(evictScan, func(q Key, p pin) {
		if p.busy(now) || own >= 0 && c.hash(q, own) != mine {
			return
		}
		if w := c.weight(q); w > most {
			v, most = victim{key: q, pin: p, ok: true}, w
		}
	})
	if most < overWeight {
		// None of the pins looked at is over its share, but a flood
		// that filled the room no one needed left its pins in front
		// of the older clients', where the next looks would take the
		// older clients' first: take one of the flood's instead.
		// Measured: 500 new clients after a /48's flood took 252 of
		// 2,000 older pins without this, none with it. When k's own
		// allocation is over its share, the pin must be one of that
		// allocation's, so a site over its share still pins its new
		// clients when none of its pins is among the oldest.
		if h := t.heavyVictim(c, s, own, mine, now); h.ok {
			return h
		}
	}
	return v
}

// weight orders the pins eviction prefers: by the levels at which the
// pin's prefix is over its share, then by its prefix's pins.
func (c *prefixes) weight(k Key) int64 {
	w := int64(c.count(0, c.hash(k, 0)))
	if n := c.narrowestOver(k); n >= 0 {
		w += int64(prefixLevels-n) * overWeight
	}
	return w
}

// overWeight is the weight of a pin over its share at one level.
const overWeight = 1 << 32

// heavyVictim takes from s.heavy the oldest idle pin still over its
// share (and, when own >= 0, of the level-own prefix of hash mine),
// dropping on the way the entries of pins gone or back within it. When
// the ring has none for a client within its share, it is filled once
// from the whole shard (refill) and looked at again. A client over its
// share does not refill: it is refused when the ring and the sample hold
// none of its own (EventPrefixFull), and letting it walk the shard at
// each refusal would make a flood's every connection cost the shard.
func (t *Table) heavyVictim(c *prefixes, s *shard, own int, mine uint64, now int64) victim {
	if s.heavy == nil {
		return victim{}
	}
	v := s.heavy.take(c, s, own, mine, now)
	if v.ok || own >= 0 || !s.heavy.refill(c, s, now) {
		return v
	}
	return s.heavy.take(c, s, own, mine, now)
}

func (h *heavy) take(c *prefixes, s *shard, own int, mine uint64, now int64) victim {
	for i := range h.keys {
		e := &h.keys[(h.next+i)%heavyKeep]
		if *e == (Key{}) || own >= 0 && c.hash(*e, own) != mine {
			continue
		}
		p, ok := s.peek(*e)
		if !ok || c.narrowestOver(*e) < 0 {
			*e = Key{}
			continue
		}
		if !p.busy(now) {
			v := victim{key: *e, pin: p, ok: true}
			*e = Key{}
			return v
		}
	}
	return victim{}
}

// refill puts in the ring the oldest idle pins of s over their share, up
// to its size, and says whether it found any. The ring only hears of pins
// made while over, a heavyKeep of them: more new clients than that in
// one shard after a flood took them all, then took the older clients'
// pins from the front of the LRU (6 of 2,000 in
// TestNewClientsAfterAnAllocationFlood). A look that finds none marks
// the ring dry until the next pin made over its share, so a shard with
// no such pins is not walked at each eviction; a full walk costs the
// shard's pins once per heavyKeep evictions at most.
func (h *heavy) refill(c *prefixes, s *shard, now int64) bool {
	if h.dry {
		return false
	}
	n := 0
	for _, k := range s.keys() {
		if n == heavyKeep {
			break
		}
		if p, _ := s.peek(k); !p.busy(now) && c.narrowestOver(k) >= 0 {
			h.keys[n] = k
			n++
		}
	}
	clear(h.keys[n:])
	h.next, h.dry = 0, n == 0
	return n > 0
}

// evict removes v's pin, if it names one; the shard's lock is held.
func (t *Table) evict(s *shard, v victim, evs *events) {
	if v.ok {
		t.unpin(s, v.key, v.pin, Evicted, evs)
	}
}

// heavy is a ring of the keys of the latest pins made while their
// allocation was over its share: a flood's pins are the most recently
// used, where the least recently used pins eviction looks at do not
// reach. The oldest is taken first, so a site over its share loses the
// pin it made heavyKeep such pins ago rather than the one a client made
// just now and will use next. An entry is checked when taken, and a
// zero key is an empty place.
type heavy struct {
	keys [heavyKeep]Key
	next int  // the place of the next push, and of the oldest entry
	dry  bool // the last refill found no pin over its share
}

const heavyKeep = 128 // 2.5 KiB a shard that has had such a pin

func (h *heavy) push(k Key) {
	h.keys[h.next] = k
	h.next = (h.next + 1) % heavyKeep
	h.dry = false
}
