package affinity

import (
	"fmt"
	"strconv"
	"strings"
)

// Cursor is where a paged listing of the table stopped: a shard and a
// position in it. Its text form ("3.120") travels in the admin API.
type Cursor struct{ Shard, Index int }

func (c Cursor) String() string { return strconv.Itoa(c.Shard) + "." + strconv.Itoa(c.Index) }

// ParseCursor reads a cursor's text form.
func ParseCursor(s string) (Cursor, error) {
	a, b, ok := strings.Cut(s, ".")
	shard, err1 := strconv.Atoi(a)
	index, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || shard < 0 || index < 0 {
		return Cursor{}, fmt.Errorf("cursor %q is not one a previous page returned", s)
	}
	return Cursor{shard, index}, nil
}

// CursorAt returns the cursor of the offset-th pin, counting shard
// lengths rather than walking pins.
func (t *Table) CursorAt(offset int) Cursor {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n := s.len()
		s.mu.Unlock()
		if offset < n {
			return Cursor{i, offset}
		}
		offset -= n
	}
	return Cursor{len(t.shards), 0}
}

// Page returns up to limit live pins, from c on, for which match (nil:
// every pin) is true, the cursor after the last pin looked at, and
// whether the table has been walked to its end. It copies one shard's
// keys at a time, so a page costs at most a shard beyond its own length
// however deep into the table it starts. match runs under a shard's lock
// and must be quick. Pins move within a shard as they are used, so a
// listing of a busy table may show a pin twice or miss one; numbers come
// from Len and Counts.
func (t *Table) Page(c Cursor, limit int, match func(Record) bool) ([]Record, Cursor, bool) {
	now := t.now().UnixNano()
	var out []Record
	for ; c.Shard < len(t.shards); c.Shard, c.Index = c.Shard+1, 0 {
		s := &t.shards[c.Shard]
		s.mu.Lock()
		keys := s.keys()
		for ; c.Index < len(keys); c.Index++ {
			if len(out) == limit {
				s.mu.Unlock()
				return out, c, false
			}
			p, ok := s.peek(keys[c.Index])
			if !ok || t.isExpired(p, now) {
				continue
			}
			if in := t.record(keys[c.Index], p); match == nil || match(in) {
				out = append(out, in)
			}
		}
		s.mu.Unlock()
	}
	return out, c, true
}
