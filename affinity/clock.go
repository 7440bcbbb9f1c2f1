package affinity

import (
	"sync/atomic"
	"time"
)

// Clock is a hybrid logical clock. Every pin and re-pin is stamped with
// its reading, so that when members of a cluster decide a client's
// backend differently, the newest decision wins everywhere (see Merge).
// A reading is milliseconds since the Unix epoch in the high 48 bits and
// a counter in the low 16: it follows the wall clock, never goes back
// when the wall clock does, and, because Observe moves it past every
// stamp received, a decision made after hearing of another always
// carries a larger stamp, whatever the skew between the machines.
type Clock struct {
	last atomic.Uint64
	now  func() time.Time
}

// NewClock returns a clock reading now; nil means time.Now.
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// StampOf is the earliest stamp of the wall-clock time t, for pins read
// back from a file that kept only their time.
func StampOf(t time.Time) uint64 { return uint64(t.UnixMilli()) << 16 }

// StampTime is the wall-clock time of a stamp.
func StampTime(stamp uint64) time.Time { return time.UnixMilli(int64(stamp >> 16)) }

// Now returns a stamp larger than every stamp it returned or observed.
func (c *Clock) Now() uint64 {
	wall := StampOf(c.now())
	for {
		last := c.last.Load()
		next := max(wall, last+1)
		if c.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Observe moves the clock past a stamp received from another member.
func (c *Clock) Observe(stamp uint64) {
	for {
		last := c.last.Load()
		if stamp <= last || c.last.CompareAndSwap(last, stamp) {
			return
		}
	}
}
