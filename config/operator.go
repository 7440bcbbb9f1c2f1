package config

// Operator is an operator's run-time decision about one backend (ctl
// drain, maint, ready, weight), kept over the config file's values: it
// outlives a reload and a restart (the snapshot's .operator file) and
// every cluster member holds the same one. Of two decisions about one
// backend, the one with the larger Version (a stamp of the pins' hybrid
// logical clock) wins, as for pins.
//
// The rule against the file: a backend the file adds starts ready; one it
// removes takes its decision with it; a runtime Weight holds while the
// file's weight for the backend is still FileWeight, so editing the
// weight in the file is the newer decision.
type Operator struct {
	Pool    string `json:"p"`
	Backend string `json:"b"`
	// State is "ready", "drain" or "maint".
	State string `json:"s"`
	// DrainUntil ends a drain in maintenance (unix milliseconds); 0:
	// never.
	DrainUntil int64 `json:"d,omitempty"`
	// Weight is the operator's weight; -1 leaves the file's.
	Weight     int    `json:"w"`
	FileWeight int    `json:"f"`
	Version    uint64 `json:"v"`
}

// Valid says whether o can be applied: a state stickylb knows, a weight
// in range, names given.
func (o Operator) Valid() bool {
	switch o.State {
	case "ready", "drain", "maint":
	default:
		return false
	}
	return o.Pool != "" && o.Backend != "" && o.Weight >= -1 && o.Weight <= MaxWeight && o.DrainUntil >= 0
}
