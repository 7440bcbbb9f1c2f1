// Package affinity keeps the table that pins each client to one backend.
//
// A Table maps a client Key (source address, source network or source
// address and port, see Keyer) to a pin naming a backend. The pin is decided
// under the table's lock before the backend is dialled, so parallel first
// connections of one client all get the same answer. A pin never expires
// while its client has an open connection: it expires TTL after the client's
// last connection closes. The table is bounded, and so is what one client
// prefix may hold of it (prefix.go). Prefixes are counted at three nested
// sizes, the limits' prefix and the customer allocations around it (an
// IPv6 /64, /56 and /48; an IPv4 /32, /24 and /16), each with the same
// share: the limits' prefix may never hold more, and an allocation over
// its share may, once the table is full, only take the place of its own
// pins, so a flood from one allocation, at any of its sizes, evicts only
// its own. When the table is full an idle pin is evicted, the flooding
// allocation's first (evict.go), and every change (pin, re-pin, unpin
// with its reason) is reported to an observer as an Event, which is how
// metrics, logs, the journal and a cluster's replication follow the
// table. A pin read back or sent to another member is a Record: one type
// for the snapshot, the journal and the cluster, admitted by one rule
// (Keyer.Admit).
//
// The table is built on github.com/hashicorp/golang-lru/v2's simplelru. Its
// expirable variant is not used: it does not refresh an entry on Get and it
// would expire pins that still have open connections. Pins are kept by
// value, and IPv4 keys as exact 64-bit numbers, so a pin costs about 135
// bytes at a million pins (IPv6 about 195).
package affinity
