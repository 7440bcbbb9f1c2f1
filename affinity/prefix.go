package affinity

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"math"
	"sync/atomic"
)

// prefixes estimates how many pins each client prefix holds, at three
// nested sizes: the limits' prefix (an IPv6 /64, an IPv4 /32 by
// default), and the allocations around it: an IPv6 /56 and /48 (what an
// ISP gives a home and a site), an IPv4 /24 and /16. Each level is a
// count-min sketch: a fixed 256 KiB whatever the number of prefixes,
// updated with atomic adds as pins come and go, and never under the true
// count (a collision can only add). Max is every level's share:
//
//   - the limits' prefix holds at most Max pins: a new client of a prefix
//     at its quota is balanced without a pin and evicts nobody;
//   - a wider allocation may hold more while the table has room (one
//     site's clients are often one /48 or one /16), but once a shard is
//     full, a new client whose /56 or /48 (/24 or /16) holds Max pins or
//     more may only take the place of an idle pin of that allocation, at
//     the narrowest size that is over its share (without spending the
//     rate cap: that bounds how fast others' pins are pushed out); it
//     goes unpinned when it finds none. A flood from one allocation, at
//     any of its sizes, so evicts only its own pins, and a /56 flooding
//     spares the other /56s of its /48 (where an ISP makes /56s of one
//     /48);
//   - any other new client of a full shard evicts, of the idle pins it
//     looks at, first one over its share at the most levels, then one of
//     the prefix holding the most pins: the flood's own, before a
//     client's that merely connected earlier.
//
// Eviction looks at the least recently used pins, and a flood's are the
// most recently used, so each shard also keeps the keys of the latest
// pins made over their share (heavy) to find them by. Below Max nothing
// changes: while no allocation holds its share (1/16 of the table by
// default), a full shard evicts as it did before the allocations were
// counted, the idle pin of the heaviest limits' prefix among those it
// looks at.
type prefixes struct {
	v4, v6 int          // the limits' prefix lengths
	max    atomic.Int32 // quota and share; 0: none
	seed   maphash.Seed
	// bits is each level's length in the 128 bits of a Key's address,
	// for IPv6 ([0]) and IPv4 ([1]) keys; level 0 is the limits' prefix.
	bits   [2][prefixLevels]int
	levels [prefixLevels]sketch
}

// sketch is one level's count-min sketch.
type sketch [prefixRows][prefixCols]atomic.Int32

const (
	prefixLevels = 3
	prefixRows   = 4
	prefixCols   = 1 << 14 // 14 bits of the hash for each row
)

// wider are the allocation sizes counted around the limits' prefix, for
// IPv6 and IPv4; a size not wider than the limits' prefix is the prefix.
var wider = [2][prefixLevels - 1]int{{56, 48}, {24, 16}}

func newPrefixes(v4, v6, max int) *prefixes {
	c := &prefixes{v4: v4, v6: v6, seed: maphash.MakeSeed()}
	c.max.Store(int32(min(max, 1<<30)))
	for f, base := range [2]int{v6, 96 + v4} {
		c.bits[f][0] = base
		for l, w := range wider[f] {
			if f == 1 {
				w += 96
			}
			c.bits[f][l+1] = min(base, w)
		}
	}
	return c
}

// hash is the hash of k's prefix at level l.
func (c *prefixes) hash(k Key, l int) uint64 {
	f := 0
	if k.v4 {
		f = 1
	}
	bits := c.bits[f][l]
	var ip [16]byte
	binary.BigEndian.PutUint64(ip[:8], binary.BigEndian.Uint64(k.ip[:8])&mask(bits))
	binary.BigEndian.PutUint64(ip[8:], binary.BigEndian.Uint64(k.ip[8:])&mask(bits-64))
	return maphash.Bytes(c.seed, ip[:])
}

// mask keeps the first n bits of 64.
func mask(n int) uint64 {
	if n <= 0 {
		return 0
	}
	return ^uint64(0) << max(0, 64-n)
}

// add counts d pins more (or fewer) for k's prefix at every level, and
// says whether the prefix then holds its share at any: the counts the
// adds return are the estimate, at no further cost.
func (c *prefixes) add(k Key, d int32) (over bool) {
	m := c.max.Load()
	for l := range c.levels {
		h := c.hash(k, l)
		n := int32(math.MaxInt32)
		for r := range prefixRows {
			n = min(n, c.levels[l][r][col(h, r)].Add(d))
		}
		over = over || m > 0 && n >= m
	}
	return over
}

// count is the estimate of the pins of the level-l prefix of hash h.
func (c *prefixes) count(l int, h uint64) int32 {
	n := c.levels[l][0][col(h, 0)].Load()
	for r := 1; r < prefixRows; r++ {
		n = min(n, c.levels[l][r][col(h, r)].Load())
	}
	return n
}

// over says whether the level-l prefix of hash h holds its share. It
// stops at the first row under the share: a prefix that is not over,
// nearly every one, costs one load.
func (c *prefixes) over(l int, h uint64) bool {
	m := c.max.Load()
	if m <= 0 {
		return false
	}
	for r := range prefixRows {
		if c.levels[l][r][col(h, r)].Load() < m {
			return false
		}
	}
	return true
}

// narrowestOver is the narrowest level at which k's prefix holds its
// share, or -1. It looks from the widest level in: a narrower prefix
// holds no more than the wider one around it, so the common answer, -1,
// costs one hash and one load.
func (c *prefixes) narrowestOver(k Key) int {
	n := -1
	for l := prefixLevels - 1; l >= 0 && c.over(l, c.hash(k, l)); l-- {
		n = l
	}
	return n
}

// col is row's column for hash h: 14 of its own 16 bits of h.
func col(h uint64, row int) uint16 { return uint16(h>>(16*row)) & (prefixCols - 1) }

// PrefixRule says what one client prefix is, for the pins a prefix may
// hold: lengths for IPv4 and IPv6 (0: 32 and 64) and its quota (0: none),
// which is also the share of the allocations around it (see prefixes).
type PrefixRule struct {
	V4, V6, Max int
}

// SetPrefixRule changes the prefix rule. New lengths recount every pin,
// under every shard's lock, so no pin is counted in one sketch and
// uncounted from another.
func (t *Table) SetPrefixRule(r PrefixRule) {
	r.V4 = cmp.Or(r.V4, 32)
	r.V6 = cmp.Or(r.V6, 64)
	if old := t.prefixes.Load(); old != nil && old.v4 == r.V4 && old.v6 == r.V6 {
		old.max.Store(int32(min(r.Max, 1<<30)))
		return
	}
	c := newPrefixes(r.V4, r.V6, r.Max)
	for i := range t.shards {
		t.shards[i].mu.Lock()
		defer t.shards[i].mu.Unlock()
	}
	for i := range t.shards {
		for _, k := range t.shards[i].keys() {
			c.add(k, 1)
		}
	}
	t.prefixes.Store(c)
}

// added and removed keep the pin counts, per backend and per prefix, as
// pins come and go; the shard's lock is held. A pin whose prefix is over
// its share at any level is kept in s.heavy for eviction to find.
func (t *Table) added(s *shard, k Key, id uint16) {
	t.count(id).Add(1)
	if t.prefixes.Load().add(k, 1) {
		if s.heavy == nil {
			s.heavy = new(heavy)
		}
		s.heavy.push(k)
	}
}

func (t *Table) removed(k Key, id uint16) {
	t.count(id).Add(-1)
	t.prefixes.Load().add(k, -1)
}

// prefixFull says whether k's prefix (the limits', level 0) holds its
// quota of pins.
func (t *Table) prefixFull(k Key) bool {
	c := t.prefixes.Load()
	return c.over(0, c.hash(k, 0))
}
