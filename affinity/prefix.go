package affinity

import (
	"cmp"
	"hash/maphash"
	"sync/atomic"
)

// prefixes estimates how many pins each client prefix (an IPv6 /64, an
// IPv4 /32 by default: the per-client limits' prefix) holds, so that a
// flood from one prefix can be told from many clients. It is a count-min
// sketch: a fixed 256 KiB whatever the number of prefixes, updated with
// atomic adds as pins come and go, and never under the true count (a
// collision can only add). Two rules use it:
//
//   - a prefix holds at most Max pins: a new client of a prefix at its
//     quota is balanced without a pin and evicts nobody;
//   - a full shard evicts, among the idle pins it looks at, one of the
//     prefix holding the most pins: the flood's own, before a client's
//     that merely connected earlier.
type prefixes struct {
	v4, v6 int          // prefix lengths
	max    atomic.Int32 // quota; 0: none
	seed   maphash.Seed
	rows   [prefixRows][prefixCols]atomic.Int32
}

const (
	prefixRows = 4
	prefixCols = 1 << 14 // 14 bits of the hash for each row
)

func newPrefixes(v4, v6, max int) *prefixes {
	c := &prefixes{v4: v4, v6: v6, seed: maphash.MakeSeed()}
	c.max.Store(int32(min(max, 1<<30)))
	return c
}

// hash is the hash of k's prefix.
func (c *prefixes) hash(k Key) uint64 {
	ip := k.ip
	bits := 96 + c.v4
	if !k.v4 {
		bits = c.v6
	}
	for i := range ip {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			ip[i] &= 0xff << (8 - bits)
			bits = 0
		default:
			ip[i] = 0
		}
	}
	return maphash.Bytes(c.seed, ip[:])
}

// add counts d pins more (or fewer) for the prefix of hash h.
func (c *prefixes) add(h uint64, d int32) {
	for r := range c.rows {
		c.rows[r][col(h, r)].Add(d)
	}
}

// count is the estimate of the pins of the prefix of hash h.
func (c *prefixes) count(h uint64) int32 {
	n := c.rows[0][col(h, 0)].Load()
	for r := 1; r < prefixRows; r++ {
		n = min(n, c.rows[r][col(h, r)].Load())
	}
	return n
}

// full says whether the prefix of hash h holds its quota.
func (c *prefixes) full(h uint64) bool {
	m := c.max.Load()
	return m > 0 && c.count(h) >= m
}

// col is row's column for hash h: 14 of its own 16 bits of h.
func col(h uint64, row int) uint16 { return uint16(h>>(16*row)) & (prefixCols - 1) }

// PrefixRule says what one client prefix is, for the pins a prefix may
// hold: lengths for IPv4 and IPv6 (0: 32 and 64) and its quota (0: none).
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
			c.add(c.hash(k), 1)
		}
	}
	t.prefixes.Store(c)
}

// added and removed keep the pin counts, per backend and per prefix, as
// pins come and go; the shard's lock is held.
func (t *Table) added(k Key, id uint16) {
	t.count(id).Add(1)
	c := t.prefixes.Load()
	c.add(c.hash(k), 1)
}

func (t *Table) removed(k Key, id uint16) {
	t.count(id).Add(-1)
	c := t.prefixes.Load()
	c.add(c.hash(k), -1)
}

// prefixFull says whether k's prefix holds its quota of pins.
func (t *Table) prefixFull(k Key) bool {
	c := t.prefixes.Load()
	return c.max.Load() > 0 && c.full(c.hash(k))
}
