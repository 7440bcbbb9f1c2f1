//go:build linux

package admin

import (
	"time"

	"github.com/stickylb/stickylb/pool"
)

// EjectionInfo is a backend's outlier ejection ([pool.NAME.outlier]).
type EjectionInfo struct {
	// Reason is the rule that ejected it: consecutive_faults,
	// consecutive_bind_rejections or fault_rate.
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
	// InARow is the ejection's multiplier: it lasts InARow times the
	// pool's ejection_time (at most its max_ejection_time).
	InARow int `json:"in_a_row"`
}

// ejectionInfo is b's ejection as the API shows it; nil when b is not
// ejected.
func ejectionInfo(b *pool.Backend) *EjectionInfo {
	e, ok := b.Ejected()
	if !ok {
		return nil
	}
	return &EjectionInfo{Reason: e.Reason.String(), Until: e.Until.UTC(), InARow: e.Count}
}
