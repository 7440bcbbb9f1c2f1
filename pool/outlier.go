package pool

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Outlier ejection learns a backend's health from the traffic it
// carries, as Envoy's outlier detection does: a CAS whose DCE/RPC binds
// are rejected, or whose calls fault, past a threshold stops taking new
// clients for an ejection time that grows with each ejection in a row.
// Pinned clients stay: their sessions live on that CAS, and moving them
// would cost each one MAPI_E_NETWORK_ERROR, which is what stickylb
// exists to prevent; when the CAS is truly broken the health checks take
// it down and the pins move then.
//
// The proxy reports each outcome with Backend.ObserveRPC. That is the
// hot path: a few atomic operations and, per call while the rate rule
// is on, one clock read (a vDSO call, tens of nanoseconds). The pool's lock is taken only to eject,
// which must see the whole pool (the share that may be ejected at once,
// and never the last backend that could take a new client).

// RPCOutcome is what one DCE/RPC exchange on a backend connection came
// to, as the proxy reads it from the PDU headers (in the clear even when
// the calls are sealed).
type RPCOutcome uint8

const (
	// BindAccepted is a bind_ack (or alter_context_resp) that accepted
	// the interface.
	BindAccepted RPCOutcome = iota + 1
	// BindRejected is a bind_nak, or a bind_ack whose result refused
	// every presentation context.
	BindRejected
	// CallOK is a response PDU to a request.
	CallOK
	// CallFault is a fault PDU answering a request.
	CallFault
)

var outcomeNames = [...]string{BindAccepted: "bind-accepted", BindRejected: "bind-rejected", CallOK: "call-ok", CallFault: "call-fault"}

func (o RPCOutcome) String() string {
	if int(o) < len(outcomeNames) && outcomeNames[o] != "" {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// EjectReason is the rule that ejected a backend. Its names are the
// config keys of the rules, and the reason label of
// stickylb_outlier_ejections_total.
type EjectReason uint8

const (
	ConsecutiveFaults EjectReason = iota + 1
	ConsecutiveBindRejections
	FaultRate
)

// EjectReasons lists every reason, for metrics that show each at zero.
var EjectReasons = []EjectReason{ConsecutiveFaults, ConsecutiveBindRejections, FaultRate}

var reasonNames = [...]string{ConsecutiveFaults: "consecutive_faults", ConsecutiveBindRejections: "consecutive_bind_rejections", FaultRate: "fault_rate"}

func (r EjectReason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Outlier is a pool's ejection policy. A rule whose threshold is 0 is
// off; a pool without a policy ejects nothing.
type Outlier struct {
	// ConsecutiveFaults ejects after this many calls in a row answered
	// with a fault.
	ConsecutiveFaults int
	// ConsecutiveBindRejections ejects after this many binds in a row
	// rejected.
	ConsecutiveBindRejections int
	// FaultRate ejects when at least this percentage of the calls of
	// the current interval faulted, once the interval has MinRequests
	// calls.
	FaultRate   int
	MinRequests int
	// Interval is the fault rate's window, and the time an ejection's
	// multiplier takes to fall by one while the backend is not ejected.
	Interval time.Duration
	// EjectionTime is the first ejection's length; the n-th ejection in a
	// row lasts n times as long, at most MaxEjectionTime.
	EjectionTime, MaxEjectionTime time.Duration
	// MaxEjectedShare is the percentage of the pool's backends that may
	// be ejected at once; one may always be, as in Envoy, unless it is
	// the last that could take a new client.
	MaxEjectedShare int
}

// Ejection is a backend's current ejection.
type Ejection struct {
	Reason EjectReason
	Until  time.Time
	// Count is the ejection's multiplier: its length is Count times the
	// ejection time.
	Count int
}

// outlierState is a backend's part of the detector; a Backend embeds it.
type outlierState struct {
	ejector    atomic.Pointer[ejector] // its pool's; nil for a backend of no pool
	faultRun   atomic.Int64            // calls that faulted in a row
	rejectRun  atomic.Int64            // binds rejected in a row
	winStart   atomic.Int64            // unix nanoseconds the fault rate's interval began
	winCalls   atomic.Int64
	winFaults  atomic.Int64
	until      atomic.Int64 // unix nanoseconds the last ejection ends (or ended); 0: none
	reason     atomic.Uint32
	level      atomic.Int32 // the last ejection's multiplier
	ejections  [len(reasonNames)]atomic.Uint64
	refused    atomic.Uint64 // ejections the share or the last-backend rule held back
	seq        atomic.Uint64 // ejections, ever; the report compares
	reportSeq  uint64        // guarded by the ejector's lock
	reportedIn bool          // the report said ejected and not yet returned; likewise
}

// ejector is a pool's detector: its policy, its clock and the lock
// that orders ejections.
type ejector struct {
	mu     sync.Mutex
	policy atomic.Pointer[Outlier]
	set    *atomic.Pointer[set]
	now    func() time.Time // nil: time.Now; tests set a clock of their own
	wake   chan<- struct{}  // told of each change, without blocking
}

func (e *ejector) nowNano() int64 {
	if e.now != nil {
		return e.now().UnixNano()
	}
	return time.Now().UnixNano()
}

// SetOutlier sets the pool's ejection policy; nil turns ejection off and
// ends every ejection at once. A backend's ejection and multiplier
// survive a change of policy (and so a reload). wake, if not nil, is
// told (without blocking) of every ejection and of a policy turned off,
// so its reader can report the changes (OutlierChanges).
func (p *Pool) SetOutlier(o *Outlier, wake chan<- struct{}) {
	e := &p.outlier
	e.mu.Lock()
	defer e.mu.Unlock()
	e.wake = wake
	if o != nil {
		c := *o
		e.policy.Store(&c)
		return
	}
	if e.policy.Swap(nil) == nil {
		return
	}
	for _, b := range p.set.Load().list {
		b.until.Store(0)
	}
	e.poke()
}

// Outlier returns the pool's ejection policy, nil when off.
func (p *Pool) Outlier() *Outlier { return p.outlier.policy.Load() }

func (e *ejector) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// ObserveRPC counts one DCE/RPC outcome on a connection to b and ejects
// b when a rule of its pool's policy says so. It is cheap enough to call
// for every PDU the proxy reads: atomics, and a clock read per call
// while the rate rule is on. While b is ejected its pinned clients'
// outcomes still count, but cannot eject it again before the ejection
// ends; an attempt (one per threshold's worth) starts the run afresh.
func (b *Backend) ObserveRPC(o RPCOutcome) {
	e := b.ejector.Load()
	if e == nil {
		return
	}
	pol := e.policy.Load()
	if pol == nil {
		return
	}
	switch o {
	case BindAccepted:
		if b.rejectRun.Load() != 0 {
			b.rejectRun.Store(0)
		}
	case BindRejected:
		if n := b.rejectRun.Add(1); pol.ConsecutiveBindRejections > 0 && n >= int64(pol.ConsecutiveBindRejections) {
			e.eject(b, ConsecutiveBindRejections)
		}
	case CallOK:
		if b.faultRun.Load() != 0 {
			b.faultRun.Store(0)
		}
		if pol.FaultRate > 0 {
			b.countCall(e, pol, false)
		}
	case CallFault:
		if n := b.faultRun.Add(1); pol.ConsecutiveFaults > 0 && n >= int64(pol.ConsecutiveFaults) {
			e.eject(b, ConsecutiveFaults)
			return
		}
		if pol.FaultRate > 0 && b.countCall(e, pol, true) {
			e.eject(b, FaultRate)
		}
	}
}

// countCall counts a call in the fault rate's interval, which begins at
// the first call after the last one ended, and reports whether the rate
// rule is met. A call counted across the turn of an interval may land in
// either: the rule is a rate, and an exact count needs a lock.
func (b *Backend) countCall(e *ejector, pol *Outlier, fault bool) bool {
	now := e.nowNano()
	if start := b.winStart.Load(); now-start >= int64(pol.Interval) && b.winStart.CompareAndSwap(start, now) {
		b.winCalls.Store(0)
		b.winFaults.Store(0)
	}
	calls := b.winCalls.Add(1)
	if !fault {
		return false
	}
	faults := b.winFaults.Add(1)
	return calls >= int64(pol.MinRequests) && faults*100 >= int64(pol.FaultRate)*calls
}

// ejectedAt reports whether b is ejected at now (unix nanoseconds).
func (b *Backend) ejectedAt(now int64) bool { return b.until.Load() > now }

// ejectedNow reports whether b is ejected now; it reads the clock only
// for a backend that was ever ejected.
func (b *Backend) ejectedNow() bool {
	u := b.until.Load()
	if u == 0 {
		return false
	}
	e := b.ejector.Load()
	return e != nil && u > e.nowNano()
}

// Ejected returns b's ejection while it lasts.
func (b *Backend) Ejected() (Ejection, bool) {
	e := b.ejector.Load()
	if e == nil {
		return Ejection{}, false
	}
	until := b.until.Load()
	if until <= e.nowNano() {
		return Ejection{}, false
	}
	return Ejection{Reason: EjectReason(b.reason.Load()), Until: time.Unix(0, until), Count: int(b.level.Load())}, true
}

// Ejections returns how many times each rule ejected b, and how many
// ejections the pool's share or the last-backend rule held back.
func (b *Backend) Ejections() (by map[EjectReason]uint64, refused uint64) {
	by = make(map[EjectReason]uint64, len(EjectReasons))
	for _, r := range EjectReasons {
		by[r] = b.ejections[r].Load()
	}
	return by, b.refused.Load()
}

// eject ejects b for rule r, unless b is ejected already, is no longer
// in the pool, or the pool may not lose it: ejecting it would leave no
// other backend to take a new client, or would eject more than the
// policy's share. Either way the rule's run starts again.
func (e *ejector) eject(b *Backend, r EjectReason) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b.faultRun.Store(0)
	b.rejectRun.Store(0)
	b.winCalls.Store(0)
	b.winFaults.Store(0)
	pol := e.policy.Load()
	now := e.nowNano()
	if pol == nil || b.ejectedAt(now) || b.removed.Load() {
		return
	}
	if !e.mayEject(b, pol, now) {
		b.refused.Add(1)
		return
	}
	level := int64(b.level.Load())
	if last := b.until.Load(); last != 0 && pol.Interval > 0 {
		// The multiplier falls by one for each interval since the last
		// ejection ended, as Envoy's does.
		level = max(0, level-(now-last)/int64(pol.Interval))
	}
	steps := int64(pol.MaxEjectionTime/pol.EjectionTime) + 1
	level = min(level+1, steps)
	d := min(time.Duration(level)*pol.EjectionTime, pol.MaxEjectionTime)
	b.level.Store(int32(level))
	b.reason.Store(uint32(r))
	b.until.Store(now + int64(d))
	b.ejections[r].Add(1)
	b.seq.Add(1)
	e.poke()
}

// mayEject says whether the pool can spare b now: some other backend
// takes new clients, and fewer than the policy's share are ejected (one
// may always be). e.mu is held, so two ejections cannot both take the
// last place.
func (e *ejector) mayEject(b *Backend, pol *Outlier, now int64) bool {
	list := e.set.Load().list
	ejected, others := 0, 0
	for _, o := range list {
		switch {
		case o.ejectedAt(now):
			ejected++
		case o != b && o.takesNewAt(now, true):
			others++
		}
	}
	allowed := max(1, len(list)*pol.MaxEjectedShare/100)
	return others > 0 && ejected < allowed
}

// OutlierChange is a backend ejected, or returned to taking new clients
// at the end of its ejection.
type OutlierChange struct {
	Backend  *Backend
	Returned bool     // false: ejected
	Ejection Ejection // the ejection that began or ended
}

// OutlierChanges returns the ejections and returns since the last call,
// in name order, and when the next ejection in force ends (zero when
// none is). Its caller publishes them; it calls again at that time, and
// whenever the wake channel of SetOutlier says so.
func (p *Pool) OutlierChanges() (changes []OutlierChange, next time.Time) {
	e := &p.outlier
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.nowNano()
	var soonest int64
	for _, b := range p.set.Load().list {
		until := b.until.Load()
		ej := Ejection{Reason: EjectReason(b.reason.Load()), Until: time.Unix(0, until), Count: int(b.level.Load())}
		if seq := b.seq.Load(); seq != b.reportSeq {
			b.reportSeq, b.reportedIn = seq, true
			changes = append(changes, OutlierChange{Backend: b, Ejection: ej})
		}
		if b.reportedIn && until <= now {
			b.reportedIn = false
			changes = append(changes, OutlierChange{Backend: b, Returned: true, Ejection: ej})
		}
		if until > now && (soonest == 0 || until < soonest) {
			soonest = until
		}
	}
	if soonest != 0 {
		next = time.Unix(0, soonest)
	}
	return changes, next
}
