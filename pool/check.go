package pool

import (
	"sync/atomic"
	"time"
)

// What an operator asks of a backend besides its state: the last health
// check and its result, why it is down, and running totals from which
// rates are taken.

// Check is a backend's last health check result.
type Check struct {
	Name string // the check, as lb.toml names it
	At   time.Time
	Took time.Duration
	Err  string // "" when it passed
}

// checkInfo holds what Check reads; a Backend embeds it.
type checkInfo struct {
	last    atomic.Pointer[Check]
	downWhy atomic.Pointer[string]
	opened  atomic.Uint64 // connections opened to the backend, ever
	failed  atomic.Uint64 // connects that failed, ever
}

// RecordCheck keeps a check's result as the backend's last.
func (b *Backend) RecordCheck(c Check) { b.last.Store(&c) }

// LastCheck returns the backend's last check result, if any ran.
func (b *Backend) LastCheck() (Check, bool) {
	if c := b.last.Load(); c != nil {
		return *c, true
	}
	return Check{}, false
}

// MarkDown sets the backend down for the reason why and reports whether
// that changed its state; MarkUp sets it up and forgets the reason.
func (b *Backend) MarkDown(why string) bool {
	b.downWhy.Store(&why)
	return b.SetHealthy(false)
}

// MarkUp sets the backend up and reports whether that changed its state.
func (b *Backend) MarkUp() bool {
	b.downWhy.Store(nil)
	return b.SetHealthy(true)
}

// DownReason is why the backend is down; "" while it is up.
func (b *Backend) DownReason() string {
	if p := b.downWhy.Load(); p != nil && !b.Healthy() {
		return *p
	}
	return ""
}

// Totals returns the connections opened to the backend and the connects
// that failed, since it was first configured.
func (b *Backend) Totals() (opened, failed uint64) { return b.opened.Load(), b.failed.Load() }
