package operator

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/locks"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/pool"
)

// Backend is a backend as the decisions see it, in the pools the server
// publishes (Known).
type Backend struct {
	Pool string
	*pool.Backend
	// FileWeight is the config file's weight for the backend.
	FileWeight int
}

// Options are what Decisions needs from the process it runs in. Every
// field may be left zero.
type Options struct {
	// Path is the decisions' file (persist.Files.Operator); "" keeps
	// none, so a restart forgets them.
	Path string
	Log  *slog.Logger
	// Failures counts decisions that could not be written to disk.
	Failures *atomic.Uint64
	// OnChange hears of a decision this member did not make through
	// Change: another member's (why says "member NAME"), or a drain's
	// deadline reached. It runs without the decisions' lock held.
	OnChange func(d Decision, why string)
	// OnDeadline closes a backend's connections when its drain's
	// deadline is reached, after it is put in maintenance.
	OnDeadline func(poolName string, b *pool.Backend)
}

// Decisions holds the decision about each backend and applies it.
type Decisions struct {
	opts  Options
	log   *slog.Logger
	clock *affinity.Clock

	// mu guards held, timers and known; nothing is called out to with
	// it held. A caller may hold its own lock when it takes mu (the
	// server's, in Known), never the other way round.
	mu     locks.Mutex
	held   map[key]Decision
	timers map[*pool.Backend]*drainTimer // a drain's deadline
	known  map[string]map[string]Backend // by pool, then backend

	saveMu locks.Mutex // orders writes: the last written is the newest
	paused atomic.Bool // another process writes the file (Pause)
}

// drainTimer bounds one drain. Its address tells it from the timer of a
// later drain of the same backend.
type drainTimer struct{ *time.Timer }

// New returns decisions about no backend yet: call Known, then Restore.
func New(opts Options) *Decisions {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Failures == nil {
		opts.Failures = new(atomic.Uint64)
	}
	return &Decisions{opts: opts, log: opts.Log, clock: affinity.NewClock(nil),
		held: map[key]Decision{}, timers: map[*pool.Backend]*drainTimer{}, known: map[string]map[string]Backend{}}
}

// Known takes the backends as they are now, after a start or a reload.
// A decision about a backend that is gone goes with it (a backend the
// file adds again starts ready); the others apply again, since a reload
// set the file's weights.
func (d *Decisions) Known(bs []Backend) {
	known := map[string]map[string]Backend{}
	for _, b := range bs {
		if known[b.Pool] == nil {
			known[b.Pool] = map[string]Backend{}
		}
		known[b.Pool][b.Name] = b
	}
	d.mu.Lock()
	d.known = known
	n := len(d.held)
	for k, dec := range d.held {
		if _, err := d.backendLocked(k.pool, k.backend); err != nil {
			delete(d.held, k)
			continue
		}
		d.applyLocked(dec)
	}
	dropped := len(d.held) != n
	d.mu.Unlock()
	if dropped {
		d.Save()
	}
}

// backendLocked finds a known backend; the error says what is missing.
func (d *Decisions) backendLocked(poolName, backend string) (Backend, error) {
	p, ok := d.known[poolName]
	if !ok {
		return Backend{}, fmt.Errorf("no pool %q", poolName)
	}
	b, ok := p[backend]
	if !ok {
		return Backend{}, fmt.Errorf("pool %s has no backend %q", poolName, backend)
	}
	return b, nil
}

// Held is the decision held about a backend, if there is one.
func (d *Decisions) Held(poolName, backend string) (Decision, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dec, ok := d.held[key{poolName, backend}]
	return dec, ok
}

// All lists the decisions held, for a whole-table sync and the file.
func (d *Decisions) All() []Decision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Values(d.held))
}

// Change makes the decision about a backend what edit makes of the one
// held (or of the file's), stamped now, applies it and writes it to
// disk. It returns the decision, for the caller to share with the other
// cluster members, and the backend.
func (d *Decisions) Change(poolName, backend string, edit func(*Decision)) (Decision, *pool.Backend, error) {
	d.mu.Lock()
	b, err := d.backendLocked(poolName, backend)
	if err != nil {
		d.mu.Unlock()
		return Decision{}, nil, err
	}
	dec, ok := d.held[key{poolName, backend}]
	if !ok {
		dec = Decision{Pool: poolName, Backend: backend, State: pool.Ready, Weight: -1}
	}
	edit(&dec)
	dec.Version = d.clock.Now()
	d.takeLocked(dec)
	d.mu.Unlock()
	d.Save()
	return dec, b.Backend, nil
}

// SetState sets a backend's state. With a deadline, a drain turns into
// maintenance when it runs out: the backend's remaining connections are
// closed (OnDeadline) and its clients move at their next connection. Any
// later decision about the backend cancels the deadline.
func (d *Decisions) SetState(poolName, backend string, st pool.AdminState, deadline time.Duration) (Decision, *pool.Backend, error) {
	return d.Change(poolName, backend, func(dec *Decision) {
		dec.State, dec.DrainUntil = st, 0
		if st == pool.Drain && deadline > 0 {
			dec.DrainUntil = time.Now().Add(deadline).UnixMilli()
		}
	})
}

// SetWeight sets a backend's weight until the file's weight for it
// changes.
func (d *Decisions) SetWeight(poolName, backend string, w int) (Decision, *pool.Backend, error) {
	d.mu.Lock()
	b, err := d.backendLocked(poolName, backend)
	d.mu.Unlock()
	if err != nil {
		return Decision{}, nil, err
	}
	return d.Change(poolName, backend, func(dec *Decision) { dec.Weight, dec.FileWeight = w, b.FileWeight })
}

// Merge takes decisions from another member: each newer than the one held
// is applied and kept. It reports whether any was; those that decide
// something new are logged and told to OnChange.
func (d *Decisions) Merge(ds []Decision, from string) bool {
	d.mu.Lock()
	changed := false
	var news []Decision
	for _, dec := range ds {
		cur, ok := d.held[dec.key()]
		if ok && cur.Version >= dec.Version {
			continue
		}
		d.takeLocked(dec)
		changed = true
		if !ok || !cur.same(dec) { // else the same decision, restamped
			news = append(news, dec)
		}
	}
	d.mu.Unlock()
	for _, dec := range news {
		d.log.Info("backend set by another member", "pool", dec.Pool, "backend", dec.Backend, "state", dec.State, "weight", dec.Weight, "member", from)
		if d.opts.OnChange != nil {
			d.opts.OnChange(dec, "member "+from)
		}
	}
	if changed {
		d.Save()
	}
	return changed
}
