package operator

import (
	"time"

	"github.com/stickylb/stickylb/affinity"

	"github.com/stickylb/stickylb/pool"
)

// takeLocked applies dec and holds it as the decision about its backend,
// its stamp seen by the clock. mu is held.
func (d *Decisions) takeLocked(dec Decision) {
	d.clock.Observe(dec.Version)
	d.applyLocked(dec)
	d.held[dec.key()] = dec
}

// applyLocked makes a backend what dec says: its state, a drain's
// deadline (one already past is maintenance at once) and the operator's
// weight while the file's weight is still the one it was set over. A
// backend not known is left alone. mu is held.
func (d *Decisions) applyLocked(dec Decision) {
	b, err := d.backendLocked(dec.Pool, dec.Backend)
	if err != nil {
		return
	}
	if t := d.timers[b.Backend]; t != nil {
		t.Stop()
		delete(d.timers, b.Backend)
	}
	b.SetAdminStateAt(dec.State, affinity.StampTime(dec.Version))
	if dec.State == pool.Drain && dec.DrainUntil > 0 {
		left := time.Until(time.UnixMilli(dec.DrainUntil))
		dt := &drainTimer{}
		dt.Timer = time.AfterFunc(max(left, 0), func() { d.deadline(dec.Pool, b.Backend, dt) })
		d.timers[b.Backend] = dt
	}
	if dec.Weight >= 0 && dec.FileWeight == b.FileWeight {
		b.SetWeight(dec.Weight)
	} else if b.FileWeight >= 0 {
		b.SetWeight(b.FileWeight)
	}
}

// deadline ends the drain dt bounded, unless a later decision replaced
// it. Every member does it at once (they share DrainUntil): maintenance,
// and the backend's remaining connections closed.
func (d *Decisions) deadline(poolName string, b *pool.Backend, dt *drainTimer) {
	d.mu.Lock()
	mine := d.timers[b] == dt
	if mine {
		delete(d.timers, b)
	}
	d.mu.Unlock()
	if !mine || b.AdminState() != pool.Drain {
		return
	}
	b.SetAdminState(pool.Maint)
	d.log.Info("drain deadline reached: backend in maintenance", "pool", poolName, "backend", b.Name)
	if d.opts.OnChange != nil {
		d.opts.OnChange(Decision{Pool: poolName, Backend: b.Name, State: pool.Maint, Weight: -1}, "drain deadline reached")
	}
	if d.opts.OnDeadline != nil {
		d.opts.OnDeadline(poolName, b)
	}
}

// Stop cancels every drain's deadline, for a process that stops.
func (d *Decisions) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for b, t := range d.timers {
		t.Stop()
		delete(d.timers, b)
	}
}
