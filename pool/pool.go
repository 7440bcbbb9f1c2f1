// Package pool holds the backends a listener forwards to, their state, and
// the choice of a backend for a client that has no pin.
//
// A Backend is a host (a CAS) known by a stable name; it has a health state
// set by the health checker, an administrative state set by the operator,
// a weight and a count of open connections. A Pool is the set of backends
// behind one or more listeners. The set is swapped atomically on reload,
// keeping the Backend objects of surviving names so their state and counts
// carry over. Choosing is keyed on backend names, never on list position,
// so every process with the same config chooses alike.
package pool

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
)

// AdminState is the operator's state for a backend.
type AdminState int32

const (
	// Ready takes new and pinned clients.
	Ready AdminState = iota
	// Drain takes no new clients; pinned clients stay until their
	// connections end.
	Drain
	// Maint takes no traffic; pinned clients move at once.
	Maint
)

func (a AdminState) String() string {
	switch a {
	case Ready:
		return "ready"
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	}
	return "admin(" + strconv.Itoa(int(a)) + ")"
}

// MarshalText writes the state's name, as the operator file and the
// cluster's wire carry it.
func (a AdminState) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads a state's name; an unknown one is an error.
func (a *AdminState) UnmarshalText(b []byte) error {
	st, err := ParseAdminState(string(b))
	if err == nil {
		*a = st
	}
	return err
}

// ParseAdminState reads an Admin state from its name.
func ParseAdminState(s string) (AdminState, error) {
	for _, a := range []AdminState{Ready, Drain, Maint} {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown backend state %q (want ready, drain or maint)", s)
}

// Backend is one server host.
type Backend struct {
	Name string
	Host string // address without port; the port comes from the listener
	Pool string // the pool's name, for labels; set by the pool that holds it

	nameHash  uint64
	weight    atomic.Int32
	healthy   atomic.Bool
	admin     atomic.Int32
	removed   atomic.Bool
	active    atomic.Int64
	maxConns  atomic.Int64 // 0: no limit
	upSince   atomic.Int64 // unix nanoseconds of the last down-to-up change; 0: up from the start
	failures  atomic.Int32 // consecutive failed connects, for passive checks
	backup    atomic.Bool  // takes new clients only when no other backend can
	pending   atomic.Bool  // some cluster member lacks it: no new clients
	rrCurrent float64      // smooth round robin's running score; guarded by its selector's lock
	toBackend atomic.Int64 // bytes to the backend, counted as they go
	toClient  atomic.Int64 // bytes to its clients, counted as they go
	addr      atomic.Pointer[hostPort]
	changed   atomic.Int64 // unix nanoseconds of the last change of health or admin state; 0: none
	checkInfo
	outlierState
}

// Backup reports whether the backend takes new clients only when no
// backend that is not a backup can.
func (b *Backend) Backup() bool { return b.backup.Load() }

// LastChange is when the backend's health or admin state last changed;
// zero when it never did.
func (b *Backend) LastChange() time.Time {
	if ns := b.changed.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// AddToBackend and AddToClient count bytes as connections copy them.
func (b *Backend) AddToBackend(n int64) { b.toBackend.Add(n) }
func (b *Backend) AddToClient(n int64)  { b.toClient.Add(n) }

// Bytes returns the bytes proxied to the backend and to its clients, by
// open connections as well as closed ones.
func (b *Backend) Bytes() (toBackend, toClient int64) { return b.toBackend.Load(), b.toClient.Load() }

type hostPort struct {
	port int
	addr string
}

// Addr returns host:port, formatted once per port rather than once per
// connection.
func (b *Backend) Addr(port int) string {
	if hp := b.addr.Load(); hp != nil && hp.port == port {
		return hp.addr
	}
	hp := &hostPort{port, net.JoinHostPort(b.Host, strconv.Itoa(port))}
	b.addr.Store(hp)
	return hp.addr
}

// NewBackend makes a backend that is healthy and ready until told otherwise.
func NewBackend(name, host string, weight int) *Backend {
	b := &Backend{Name: name, Host: host, nameHash: hashString(name)}
	b.weight.Store(int32(weight))
	b.healthy.Store(true)
	return b
}

func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return affinity.Mix(h)
}

func (b *Backend) Weight() int                { return int(b.weight.Load()) }
func (b *Backend) SetWeight(w int)            { b.weight.Store(int32(w)) }
func (b *Backend) Healthy() bool              { return b.healthy.Load() }
func (b *Backend) AdminState() AdminState     { return AdminState(b.admin.Load()) }
func (b *Backend) SetAdminState(a AdminState) { b.SetAdminStateAt(a, time.Now()) }

// SetAdminStateAt sets the state as decided at t: a decision restored at
// start or taken from another member dates from when it was made, not
// from when this process applied it (LastChange, the API's "since").
func (b *Backend) SetAdminStateAt(a AdminState, t time.Time) {
	if AdminState(b.admin.Swap(int32(a))) != a {
		b.changed.Store(t.UnixNano())
	}
}
func (b *Backend) Removed() bool { return b.removed.Load() }
func (b *Backend) Active() int64 { return b.active.Load() }
func (b *Backend) ConnOpened()   { b.active.Add(1); b.opened.Add(1) }
func (b *Backend) ConnClosed()   { b.active.Add(-1) }

// SetHealthy records a health verdict and reports whether it changed.
func (b *Backend) SetHealthy(up bool) bool {
	changed := b.healthy.Swap(up) != up
	if changed {
		now := time.Now().UnixNano()
		b.changed.Store(now)
		if up {
			b.upSince.Store(now)
			b.failures.Store(0)
		}
	}
	return changed
}

// SetMaxConns limits the backend's open connections for new clients; 0
// means no limit.
func (b *Backend) SetMaxConns(n int) { b.maxConns.Store(int64(n)) }

// MaxConns returns the limit, 0 for none.
func (b *Backend) MaxConns() int { return int(b.maxConns.Load()) }

// ConnectFailed counts a failed connect and returns how many failed in a
// row; ConnectOK ends the run.
func (b *Backend) ConnectFailed() int { b.failed.Add(1); return int(b.failures.Add(1)) }

// ConnectOK resets the count of failed connects.
func (b *Backend) ConnectOK() {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
}

// effectiveWeight is the weight, ramped up linearly over slowStart after
// the backend came back up, so a recovered CAS is not flooded.
func (b *Backend) effectiveWeight(now int64, slowStart time.Duration) float64 {
	w := float64(b.weight.Load())
	since := b.upSince.Load()
	if slowStart <= 0 || since == 0 {
		return w
	}
	if el := time.Duration(now - since); el < slowStart {
		return w * max(float64(el)/float64(slowStart), 0.01)
	}
	return w
}

// Status is a one-word summary for logs and the admin API: removed, down,
// maint, drain or up. Maintenance is planned work and takes no traffic
// whatever the checks say, so it reads maint while the CAS reboots (as
// HAProxy's MAINT does); health alone is Healthy.
func (b *Backend) Status() string {
	switch {
	case b.Removed():
		return "removed"
	case b.AdminState() == Maint:
		return "maint"
	case !b.Healthy():
		return "down"
	case b.AdminState() == Drain:
		return "drain"
	}
	return "up"
}

// SetPending says whether some cluster member lacks the backend, which
// then takes no new clients; it reports whether that changed.
func (b *Backend) SetPending(p bool) bool { return b.pending.Swap(p) != p }

// Pending says whether some cluster member lacks the backend.
func (b *Backend) Pending() bool { return b.pending.Load() }

// TakesNew reports whether the backend may be given a client with no pin:
// it may, and it is not ejected as an outlier.
func (b *Backend) TakesNew() bool { return b.takesNew() && !b.ejectedNow() }

// takesNewAt is TakesNew at now (unix nanoseconds), or ignoring an
// ejection.
func (b *Backend) takesNewAt(now int64, ignoreEjection bool) bool {
	return b.takesNew() && (ignoreEjection || !b.ejectedAt(now))
}

// takesNew is TakesNew but for an outlier's ejection.
func (b *Backend) takesNew() bool {
	if m := b.maxConns.Load(); m > 0 && b.active.Load() >= m {
		return false
	}
	if b.pending.Load() {
		return false
	}
	return !b.removed.Load() && b.healthy.Load() && AdminState(b.admin.Load()) == Ready && b.weight.Load() > 0
}

// KeepsPinned reports whether a client already pinned here may stay, and
// if not, why not (the re-pin reason).
func (b *Backend) KeepsPinned() (bool, affinity.RepinReason) {
	switch {
	case b.removed.Load():
		return false, affinity.RepinRemoved
	case !b.healthy.Load():
		return false, affinity.RepinDown
	case AdminState(b.admin.Load()) == Maint:
		return false, affinity.RepinMaint
	}
	return true, ""
}

// Spec describes a backend as the config gives it.
type Spec struct {
	Name     string
	Host     string
	Weight   int
	MaxConns int
	Backup   bool
	// Pending holds a backend the pool did not have back from new
	// clients until the cluster's members are known to have it too.
	Pending bool
}

// Pool is a set of backends and the way new clients are spread over them.
type Pool struct {
	Name      string
	set       atomic.Pointer[set]
	balance   atomic.Int32
	slowStart atomic.Int64 // time.Duration
	// selectors holds one selector per balance method, each with its own
	// state (round robin's turns), indexed by config.Balance.
	selectors [3]selector
	// gone are backends a reload removed, listed (as "removed") while
	// they still have open connections or pins: see Listed.
	goneMu sync.Mutex
	gone   []*Backend
	// outlier is the pool's outlier detector (outlier.go).
	outlier ejector
}

// SetSlowStart sets how long a recovered backend takes to reach its full
// share of new clients.
func (p *Pool) SetSlowStart(d time.Duration) { p.slowStart.Store(int64(d)) }

type set struct {
	list   []*Backend // sorted by name
	byName map[string]*Backend
}

// New makes a pool of the given backends.
func New(name string, bal config.Balance, specs []Spec) *Pool {
	p := &Pool{Name: name, selectors: [3]selector{config.Hash: hashSelector{}, config.LeastConn: leastConnSelector{}, config.RoundRobin: &roundRobinSelector{}}}
	p.balance.Store(int32(bal))
	p.outlier.set = &p.set
	p.Update(bal, specs)
	return p
}

// Update replaces the pool's backends. Backends whose name survives keep
// their object, state and counts (their host and weight are updated);
// backends no longer listed are marked removed, so their pins move and
// their open connections run on until they end. It returns the removed
// backends.
func (p *Pool) Update(bal config.Balance, specs []Spec) (removed []*Backend) {
	p.balance.Store(int32(bal))
	old := p.set.Load()
	s := &set{byName: make(map[string]*Backend, len(specs))}
	for _, sp := range specs {
		var b *Backend
		if old != nil {
			b = old.byName[sp.Name]
		}
		if b == nil || b.Host != sp.Host {
			// A new address is a new server: it starts afresh.
			b = NewBackend(sp.Name, sp.Host, sp.Weight)
			b.Pool = p.Name
			b.pending.Store(sp.Pending)
		}
		b.SetWeight(sp.Weight)
		b.SetMaxConns(sp.MaxConns)
		b.backup.Store(sp.Backup)
		b.ejector.Store(&p.outlier)
		s.list = append(s.list, b)
		s.byName[sp.Name] = b
	}
	slices.SortFunc(s.list, func(a, b *Backend) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	p.set.Store(s)
	if old != nil {
		for _, b := range old.list {
			if s.byName[b.Name] != b {
				b.removed.Store(true)
				removed = append(removed, b)
			}
		}
	}
	p.goneMu.Lock()
	p.gone = slices.DeleteFunc(append(p.gone, removed...), func(b *Backend) bool { return s.byName[b.Name] != nil })
	p.goneMu.Unlock()
	return removed
}

// Listed returns the backends to show (API, ctl, dashboard, metrics):
// the current ones, then those a reload removed that inUse says still
// have connections or pins. A removed backend that has neither is
// forgotten.
func (p *Pool) Listed(inUse func(*Backend) bool) []*Backend {
	out := slices.Clone(p.Backends())
	p.goneMu.Lock()
	defer p.goneMu.Unlock()
	p.gone = slices.DeleteFunc(p.gone, func(b *Backend) bool { return !inUse(b) })
	return append(out, p.gone...)
}

// Backends returns the current backends in name order. The slice is
// shared: do not modify it.
func (p *Pool) Backends() []*Backend { return p.set.Load().list }

// Backend returns the backend with the given name, or nil.
func (p *Pool) Backend(name string) *Backend { return p.set.Load().byName[name] }

// Balance returns the pool's balance method.
func (p *Pool) Balance() config.Balance { return config.Balance(p.balance.Load()) }

// Choose picks a backend for a client with no usable pin, among those that
// take new clients and that skip does not reject: a backup only when no
// other backend qualifies, and an outlier's ejected backend only when no
// other backend, backups included, does (ejection never leaves a pool
// without a backend, as Envoy's panic mode). keyHash is the client key's
// hash. It returns nil when no backend qualifies.
func (p *Pool) Choose(keyHash uint64, skip func(*Backend) bool) *Backend {
	now := time.Now().UnixNano()
	c := choice{list: p.set.Load().list, key: keyHash, skip: skip, now: now, slowStart: time.Duration(p.slowStart.Load()), ejectNow: now}
	if p.outlier.now != nil {
		c.ejectNow = p.outlier.nowNano()
	}
	sel := p.selectors[p.Balance()]
	passes := 2
	if p.outlier.policy.Load() != nil {
		passes = 4
	}
	for pass := range passes {
		c.backups, c.ejected = pass%2 == 1, pass >= 2
		if b := sel.pick(c); b != nil {
			return b
		}
	}
	return nil
}

// TakesNew reports whether Choose can give some backend a new client
// (an ejected one counts: Choose takes it when it is all there is).
func (p *Pool) TakesNew() bool {
	now := p.outlier.nowNano()
	for _, b := range p.set.Load().list {
		if b.takesNewAt(now, true) {
			return true
		}
	}
	return false
}
