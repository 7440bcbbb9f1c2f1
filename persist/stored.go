package persist

import (
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// recordJSON is a pin as the snapshot and the journal write it: one form
// for both, holding everything a pin is (its failback home and its age
// too), converted to and from the one record type a cluster also sends
// (affinity.Record). In the journal it also names its pool, and a
// Backend of "" is an unpin.
type recordJSON struct {
	Pool     string `json:"pool,omitempty"`
	Client   string `json:"client"`
	Backend  string `json:"backend,omitempty"`
	Home     string `json:"home,omitempty"`
	Created  int64  `json:"created,omitempty"`   // unix seconds
	LastSeen int64  `json:"last_seen,omitempty"` // unix seconds of the last close (or the change, in the journal)
	// Version is the decision's clock stamp (affinity.Wins); files
	// written before it existed lack it, and Created stands in.
	Version uint64 `json:"version,omitempty"`
	// At is the change's time in journals written before last_seen was;
	// read, never written.
	At int64 `json:"at,omitempty"`
}

// jsonOf is the stored form of a record of pool ("" in a snapshot,
// which groups pins by pool).
func jsonOf(pool string, r affinity.Record) recordJSON {
	return recordJSON{Pool: pool, Client: r.Key.String(), Backend: r.Backend, Home: r.Home, Created: r.Created, LastSeen: r.LastSeen, Version: r.Version}
}

// record reads a stored pin back, with times in the future taken as now.
func (sp recordJSON) record(now time.Time) (affinity.Record, error) {
	k, err := affinity.ParseKey(sp.Client)
	if err != nil {
		return affinity.Record{}, err
	}
	last := sp.LastSeen
	if last == 0 {
		last = max(sp.At, sp.Created)
	}
	return affinity.Record{Key: k, Backend: sp.Backend, Home: sp.Home, Version: sp.Version,
		Created: min(sp.Created, now.Unix()), LastSeen: min(last, now.Unix())}, nil
}

// restoreRecord puts one stored pin into t by the one rule snapshot,
// journal and cluster share (affinity.Keyer.Admit), unless it expired
// while stickylb was down. replace says a journal's later word replaces
// a pin the client has; an unpin forgets it.
func restoreRecord(p affinity.Pins, sp recordJSON, now time.Time, replace bool) bool {
	if p.Table == nil {
		return false
	}
	r, err := sp.record(now)
	if err != nil {
		return false
	}
	r, ok := p.Keyer.Admit(r, p.Has)
	switch {
	case !ok:
		return false
	case r.Backend == "":
		return replace && p.Table.Forget(r.Key)
	case now.Sub(time.Unix(r.LastSeen, 0)) > p.Table.TTL():
		return false
	case replace:
		return p.Table.Replace(r)
	}
	return p.Table.Insert(r)
}
