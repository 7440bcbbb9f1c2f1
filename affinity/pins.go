package affinity

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Pins is one pool's pins as the server publishes them to whoever keeps
// or shares them (the pin store, the cluster, the admin API, metrics):
// the table, how its clients are keyed and admitted, and the names of
// the backends the pool has now. It is a value: the server makes new
// ones on every change of its pools and publishes them whole (Latest),
// so no reader calls back into the server.
type Pins struct {
	Name  string // the pool's
	Table *Table // nil for a pool that keeps no pins
	Keyer Keyer
	// Backends are the pool's backend names, sorted; a pin to one it
	// does not have is refused when read back or received. Nil: every
	// name is taken (tests).
	Backends []string
}

// Has says whether the pool has a backend of that name.
func (p Pins) Has(backend string) bool {
	if p.Backends == nil {
		return true
	}
	_, ok := slices.BinarySearch(p.Backends, backend)
	return ok
}

// Latest holds every pool's Pins as last published, in name order. Its
// readers take no lock: a reload publishes a new list whole.
type Latest struct{ p atomic.Pointer[[]Pins] }

// Publish makes ps the pools' pins, sorting each pool's Backends.
func (l *Latest) Publish(ps []Pins) {
	ps = slices.Clone(ps)
	for i := range ps {
		ps[i].Backends = slices.Sorted(slices.Values(ps[i].Backends))
	}
	slices.SortFunc(ps, func(a, b Pins) int { return strings.Compare(a.Name, b.Name) })
	l.p.Store(&ps)
}

// All returns the pools' pins in name order; the slice is shared: do not
// modify it. A nil Latest has none.
func (l *Latest) All() []Pins {
	if l == nil {
		return nil
	}
	if p := l.p.Load(); p != nil {
		return *p
	}
	return nil
}

// Kept returns the pools that keep pins (a Table), in name order.
func (l *Latest) Kept() []Pins {
	var out []Pins
	for _, p := range l.All() {
		if p.Table != nil {
			out = append(out, p)
		}
	}
	return out
}

// Named returns one pool's pins.
func (l *Latest) Named(name string) (Pins, bool) {
	all := l.All()
	i, ok := slices.BinarySearchFunc(all, name, func(p Pins, n string) int { return strings.Compare(p.Name, n) })
	if !ok {
		return Pins{}, false
	}
	return all[i], true
}
