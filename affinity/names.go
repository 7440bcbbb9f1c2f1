package affinity

import "sync/atomic"

// maxNames bounds the backend names a table numbers: a pin's home is
// its number plus one, in 16 bits.
const maxNames = 1<<16 - 1

// internable says whether every name given has a number or can get one.
// A table refuses records and pins it cannot number (past 65,535 names,
// where the numbers would wrap and pins land on the wrong backend).
func (t *Table) internable(names ...string) bool {
	n := len(*t.names.Load())
	for _, name := range names {
		if name == "" {
			continue
		}
		if _, ok := t.ids.Load(name); !ok {
			n++
		}
	}
	return n <= maxNames
}

// intern returns the number standing for a backend name. Names are few
// (the backends ever configured), so the list only grows; callers ask
// internable first, and a name past the bound (two callers racing for
// the last numbers) gets the number of the first name rather than a
// wrapped one.
func (t *Table) intern(name string) uint16 {
	if id, ok := t.ids.Load(name); ok {
		return id.(uint16)
	}
	t.namesMu.Lock()
	defer t.namesMu.Unlock()
	if id, ok := t.ids.Load(name); ok {
		return id.(uint16)
	}
	old := *t.names.Load()
	if len(old) >= maxNames {
		return 0
	}
	id := uint16(len(old))
	// Appending in place is safe: a reader of the old header reads only
	// numbers below its length, and the writers hold namesMu. Copying the
	// list for each new name made N names cost N²/2 copies.
	next := append(old, name)
	counts := *t.counts.Load()
	nextCounts := append(counts, new(atomic.Int64))
	t.counts.Store(&nextCounts)
	t.names.Store(&next)
	t.ids.Store(name, id)
	return id
}
