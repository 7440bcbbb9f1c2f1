package affinity

import "strconv"

// Placement says how a connection's backend was placed: by a new pin,
// by the pin it had, by a pin moved, or without a pin.
type Placement uint8

const (
	// New: the client had no live pin; one was made.
	New Placement = iota
	// Hit: the client's pin was used as it was.
	Hit
	// Repin: the client's pin pointed at a backend that could not take it
	// and was moved.
	Repin
	// Unpinned: the table was full of clients with connections open, or
	// new pins were over their cap, so this connection was balanced
	// without a pin.
	Unpinned
)

func (d Placement) String() string {
	switch d {
	case New:
		return "new"
	case Hit:
		return "hit"
	case Repin:
		return "repin"
	case Unpinned:
		return "unpinned"
	}
	return "unknown"
}

// EventKind names a change to the table.
type EventKind uint8

const (
	EventPin        EventKind = iota // a new pin
	EventRepin                       // a pin moved to another backend
	EventUnpin                       // a pin left the table
	EventFull                        // a new client went unpinned: every pin looked at was busy
	EventThrottled                   // a new client went unpinned: over the cap on new pins per second
	EventPrefixFull                  // a new client went unpinned: its prefix held its quota of pins, or its allocation its share of a full table with no pin of its own to give up
)

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

var eventNames = [...]string{EventPin: "pin", EventRepin: "repin", EventUnpin: "unpin", EventFull: "full", EventThrottled: "throttled", EventPrefixFull: "prefix-full"}

// UnpinReason says why a pin left the table.
type UnpinReason string

const (
	Expired UnpinReason = "expired" // no connection for longer than the TTL
	Evicted UnpinReason = "evicted" // the table was full
	Deleted UnpinReason = "deleted" // an operator deleted it
)

// RepinReason says why a pin moved to another backend.
type RepinReason string

const (
	RepinDown    RepinReason = "down"    // its backend failed its checks
	RepinMaint   RepinReason = "maint"   // its backend is in maintenance
	RepinRemoved RepinReason = "removed" // its backend left the config
	RepinRefused RepinReason = "refused" // its backend refused this connection
	// RepinFailback sends a client home: it clears the pin's Home. Any
	// other re-pin records the backend left as Home, unless one is
	// recorded already.
	RepinFailback RepinReason = "failback"
	// RepinPeer: another member of the cluster moved the pin, by a newer
	// decision (see Merge).
	RepinPeer RepinReason = "peer"
)

// Event is one change to the table. Active is the number of connections
// the client had open at the time, so an eviction of a busy pin can be told
// apart from a harmless one.
type Event struct {
	Kind    EventKind
	Key     Key
	Backend string      // the backend pinned now (for unpins: the one it was pinned to)
	From    string      // for re-pins, the backend the pin left
	Repin   RepinReason // for re-pins, what the Chooser said
	Unpin   UnpinReason // for unpins
	Active  int32
	Home    string // the pin's Home (see Current)
	Created int64  // unix seconds the pin was made
	Version uint64 // the Clock's stamp of the change (pins, re-pins, deletions)
	// Remote says the change came from another member of a cluster
	// (Merge), so it is not to be sent on again.
	Remote bool
}

// Record is the one conversion of a change into the record of the pin it
// leaves, which the journal writes and the cluster sends: for a pin or a
// re-pin, the pin as it is now; for an unpin, an unpin (Backend ""). It
// reports false for an event that changes no pin (a client left
// unpinned). LastSeen and HeldUntil are for the caller to set: the
// journal's is the change's time, the cluster's the last close.
func (ev Event) Record() (Record, bool) {
	switch ev.Kind {
	case EventPin, EventRepin:
		return Record{Key: ev.Key, Backend: ev.Backend, Home: ev.Home, Version: ev.Version, Created: ev.Created}, true
	case EventUnpin:
		return Record{Key: ev.Key, Version: ev.Version, Created: ev.Created}, true
	}
	return Record{}, false
}

// Shared says whether every cluster member is to make the change too: a
// pin, a re-pin or an operator's deletion made here. Expiry and eviction
// are each member's own (each reckons its own TTL and room), and a change
// that came from another member is not sent on.
func (ev Event) Shared() bool {
	if ev.Remote {
		return false
	}
	switch ev.Kind {
	case EventPin, EventRepin:
		return true
	case EventUnpin:
		return ev.Unpin == Deleted
	}
	return false
}

// event describes pin p of client k for an event of kind.
func (t *Table) event(kind EventKind, k Key, p pin, from string, why RepinReason) Event {
	return Event{Kind: kind, Key: k, Backend: t.name(p.backend), From: from, Repin: why, Active: p.active,
		Home: t.homeName(p), Created: int64(p.created), Version: p.ver}
}

// Current is what a Chooser is told about a client's pin.
type Current struct {
	Backend string // the pinned backend; "" when the client has no pin
	// Home is the backend the client was first moved off (because it was
	// down, refused, in maintenance...), for failback; "" when it never
	// moved.
	Home   string
	Active int32 // the client's open connections
}

// Chooser decides the backend for a client. It is called under the table's
// lock and must not block. Returning cur.Backend keeps the pin; returning
// another name moves it, with reason saying why; an error refuses the
// connection and leaves the table as it was.
type Chooser func(cur Current) (backend string, why RepinReason, err error)

// events collects the changes made under a lock so they are reported
// after it is released. Most operations make at most two, which fit
// without allocating.
type events struct {
	buf  [2]Event
	n    int
	more []Event
}

func (e *events) add(ev Event) {
	if e.n < len(e.buf) {
		e.buf[e.n] = ev
		e.n++
		return
	}
	e.more = append(e.more, ev)
}

// last is the event added last; there must be one.
func (e *events) last() *Event {
	if len(e.more) > 0 {
		return &e.more[len(e.more)-1]
	}
	return &e.buf[e.n-1]
}

func (t *Table) emit(e *events) {
	if t.onEvent == nil {
		return
	}
	for i := 0; i < e.n; i++ {
		t.onEvent(e.buf[i])
	}
	for _, ev := range e.more {
		t.onEvent(ev)
	}
}
