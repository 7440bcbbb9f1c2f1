package affinity

import (
	"encoding/binary"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// shard is one lock's worth of the table. Its pins live in two LRUs by
// the shape of their key, because a Go map's memory follows the size of
// its key: an IPv4 key (address, port and prefix length: 7 bytes) is kept
// as an exact uint64, which halves the map's slot and brings a pin at 1M
// pins from about 180 to about 135 bytes (BenchmarkMemoryPerPin). IPv6
// keys do not fit 64 bits without hashing, and a hashed key could make two
// clients one, so they keep the full Key. The shard's bound and its
// eviction order span both.
type shard struct {
	mu   sync.Mutex
	v4   *simplelru.LRU[uint64, pin]
	wide *simplelru.LRU[Key, pin]
	max  int
	// heavy keeps the latest pins made while their allocation was over
	// its share, for eviction to find them (see Table.pick); nil until
	// there is one.
	heavy *heavy
}

// compact is the exact 64-bit form of an IPv4 key.
func (k Key) compact() (uint64, bool) {
	if !k.v4 {
		return 0, false
	}
	return uint64(binary.BigEndian.Uint32(k.ip[12:])) | uint64(k.port)<<32 | uint64(k.bits)<<48, true
}

func fromCompact(c uint64) Key {
	k := Key{port: uint16(c >> 32), bits: uint8(c >> 48), v4: true}
	k.ip[10], k.ip[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(k.ip[12:], uint32(c))
	return k
}

func (s *shard) size(n int) {
	// The LRUs' own bound sits one above ours: evictions are always ours
	// (see Table.room), never the library's silent one.
	if s.v4 == nil {
		s.v4, _ = simplelru.NewLRU[uint64, pin](n+1, nil)
		s.wide, _ = simplelru.NewLRU[Key, pin](n+1, nil)
	} else {
		s.v4.Resize(n + 1)
		s.wide.Resize(n + 1)
	}
	s.max = n
}

// get returns k's pin and marks it recently used.
func (s *shard) get(k Key) (pin, bool) {
	if c, ok := k.compact(); ok {
		return s.v4.Get(c)
	}
	return s.wide.Get(k)
}

// peek returns k's pin without touching its recency.
func (s *shard) peek(k Key) (pin, bool) {
	if c, ok := k.compact(); ok {
		return s.v4.Peek(c)
	}
	return s.wide.Peek(k)
}

// put stores k's pin as the most recently used.
func (s *shard) put(k Key, p pin) {
	if c, ok := k.compact(); ok {
		s.v4.Add(c, p)
		return
	}
	s.wide.Add(k, p)
}

func (s *shard) remove(k Key) {
	if c, ok := k.compact(); ok {
		s.v4.Remove(c)
		return
	}
	s.wide.Remove(k)
}

func (s *shard) len() int { return s.v4.Len() + s.wide.Len() }

// oldest returns the least recently used pin of the shard: the older of
// the two LRUs' oldest, by last activity.
func (s *shard) oldest() (Key, pin, bool) {
	c, p4, ok4 := s.v4.GetOldest()
	k, pw, okw := s.wide.GetOldest()
	switch {
	case ok4 && (!okw || p4.last() <= pw.last()):
		return fromCompact(c), p4, true
	case okw:
		return k, pw, true
	}
	return Key{}, pin{}, false
}

// scan calls f with up to n of the least recently used pins, oldest
// first by last activity, and marks each used once looked at, so that
// the next scan looks at the next ones. Each LRU is stepped through at
// most once: a pin marked used keeps its last activity, so oldest alone
// could hand the same one back.
func (s *shard) scan(n int, f func(Key, pin)) {
	n4, nw := s.v4.Len(), s.wide.Len()
	for ; n > 0 && n4+nw > 0; n-- {
		c, p4, _ := s.v4.GetOldest()
		k, pw, _ := s.wide.GetOldest()
		if n4 > 0 && (nw == 0 || p4.last() <= pw.last()) {
			f(fromCompact(c), p4)
			s.v4.Get(c)
			n4--
		} else {
			f(k, pw)
			s.wide.Get(k)
			nw--
		}
	}
}

// keys returns every key of the shard, oldest first within each LRU.
func (s *shard) keys() []Key {
	out := make([]Key, 0, s.len())
	for _, c := range s.v4.Keys() {
		out = append(out, fromCompact(c))
	}
	return append(out, s.wide.Keys()...)
}
