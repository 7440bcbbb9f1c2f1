package affinity

import "sync/atomic"

// maxNames bounds the backend names a table numbers: a pin's home is
// its number plus one, in 16 bits.
const maxNames = 1<<16 - 1

// numbered gives every name given its number, all or none, and reports
// whether it could: past 65,535 names a table refuses the record or pin
// that would need one more (the 16-bit numbers would wrap and pins land
// on the wrong backend). Every path that stores a name calls it first,
// under one lock, so intern below always finds the number.
func (t *Table) numbered(names ...string) bool {
	missing := false
	for _, name := range names {
		if _, ok := t.ids.Load(name); name != "" && !ok {
			missing = true
		}
	}
	if !missing {
		return true // the common case: no lock
	}
	t.namesMu.Lock()
	defer t.namesMu.Unlock()
	n := len(*t.names.Load())
	for _, name := range names {
		if _, ok := t.ids.Load(name); name != "" && !ok {
			n++
		}
	}
	if n > maxNames {
		return false
	}
	for _, name := range names {
		if name != "" {
			t.add(name)
		}
	}
	return true
}

// intern returns the number of a name numbered gave one.
func (t *Table) intern(name string) uint16 {
	id, ok := t.ids.Load(name)
	if !ok {
		panic("affinity: backend name " + name + " stored without numbered")
	}
	return id.(uint16)
}

// add numbers name if it has no number yet; namesMu is held.
func (t *Table) add(name string) {
	if _, ok := t.ids.Load(name); ok {
		return
	}
	old := *t.names.Load()
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
}
