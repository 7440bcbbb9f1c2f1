package operator

import (
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
)

// Decision is an operator's decision about one backend (ctl drain, maint,
// ready, weight). Its JSON is what the file and the cluster's wire carry:
// keep the field names.
type Decision struct {
	Pool    string `json:"p"`
	Backend string `json:"b"`
	// State is ready, drain or maint (as text: "ready", ...).
	State pool.AdminState `json:"s"`
	// DrainUntil ends a drain in maintenance (unix milliseconds); 0:
	// never.
	DrainUntil int64 `json:"d,omitempty"`
	// Weight is the operator's weight; -1 leaves the file's.
	Weight int `json:"w"`
	// FileWeight is the file's weight when Weight was set.
	FileWeight int    `json:"f"`
	Version    uint64 `json:"v"`
}

// Valid says whether d can be applied: a state stickylb knows, a weight
// in range, names given. A Decision read from JSON has a known state or
// failed to decode; a zero one is ready.
func (d Decision) Valid() bool {
	switch d.State {
	case pool.Ready, pool.Drain, pool.Maint:
	default:
		return false
	}
	return d.Pool != "" && d.Backend != "" && d.Weight >= -1 && d.Weight <= config.MaxWeight && d.DrainUntil >= 0
}

// same says whether d and e decide the same about their backend, stamps
// and drain deadlines aside: a decision restamped is not news.
func (d Decision) same(e Decision) bool { return d.State == e.State && d.Weight == e.Weight }

type key struct{ pool, backend string }

func (d Decision) key() key { return key{d.Pool, d.Backend} }
