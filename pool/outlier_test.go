package pool

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
)

// clock is a test's time: it moves only when the test says.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var start = time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)

// outlierPool is a pool of n backends with policy o, on a clock of its
// own.
func outlierPool(t *testing.T, n int, o Outlier) (*Pool, *clock) {
	t.Helper()
	p := New("p", config.Hash, specs(n))
	c := &clock{}
	c.ns.Store(start.UnixNano())
	p.outlier.now = c.now
	p.SetOutlier(&o, nil)
	return p, c
}

func policy() Outlier {
	return Outlier{ConsecutiveFaults: 5, Interval: 10 * time.Second, EjectionTime: 30 * time.Second,
		MaxEjectionTime: 5 * time.Minute, MaxEjectedShare: 50}
}

func observe(b *Backend, o RPCOutcome, n int) {
	for range n {
		b.ObserveRPC(o)
	}
}

// nobodyNewOn reports whether none of many new clients goes to b.
func nobodyNewOn(p *Pool, b *Backend) bool {
	for i := range 500 {
		if p.Choose(keyHash(i), nil) == b {
			return false
		}
	}
	return true
}

// Five faults in a row eject a backend for the ejection time; four do
// not, and a call that went well starts the run again.
func TestConsecutiveFaultsEject(t *testing.T) {
	p, _ := outlierPool(t, 3, policy())
	cas1 := p.Backend("cas1")
	observe(cas1, CallFault, 4)
	cas1.ObserveRPC(CallOK)
	observe(cas1, CallFault, 4)
	if _, ej := cas1.Ejected(); ej || !cas1.TakesNew() {
		t.Fatal("ejected after runs of 4 faults; the rule is 5 in a row")
	}
	cas1.ObserveRPC(CallFault)
	e, ej := cas1.Ejected()
	if !ej || e.Reason != ConsecutiveFaults || !e.Until.Equal(start.Add(30*time.Second)) || e.Count != 1 {
		t.Fatalf("after 5 faults in a row: %+v, %v; want ejected for consecutive_faults until +30s", e, ej)
	}
	if cas1.TakesNew() || !nobodyNewOn(p, cas1) {
		t.Fatal("an ejected backend was given new clients")
	}
	if keeps, _ := cas1.KeepsPinned(); !keeps {
		t.Fatal("an ejected backend lost its pinned clients; ejection is for new clients only")
	}
	if by, _ := cas1.Ejections(); by[ConsecutiveFaults] != 1 {
		t.Fatalf("ejections by reason %v", by)
	}
}

// Binds rejected in a row eject by their own rule; an accepted bind
// ends the run, and faults do not count toward it.
func TestConsecutiveBindRejectionsEject(t *testing.T) {
	o := policy()
	o.ConsecutiveFaults, o.ConsecutiveBindRejections = 0, 3
	p, _ := outlierPool(t, 2, o)
	cas2 := p.Backend("cas2")
	observe(cas2, BindRejected, 2)
	cas2.ObserveRPC(BindAccepted)
	observe(cas2, BindRejected, 2)
	observe(cas2, CallFault, 50)
	if _, ej := cas2.Ejected(); ej {
		t.Fatal("ejected without 3 rejected binds in a row (or by faults, whose rule is off)")
	}
	cas2.ObserveRPC(BindRejected)
	if e, ej := cas2.Ejected(); !ej || e.Reason != ConsecutiveBindRejections {
		t.Fatalf("after 3 rejected binds in a row: %+v, %v", e, ej)
	}
}

// The fault rate ejects once the interval has min_requests calls and
// the share of faults reaches the rate; faults of an interval that is
// over do not count.
func TestFaultRateEjects(t *testing.T) {
	o := policy()
	o.ConsecutiveFaults, o.FaultRate, o.MinRequests = 0, 50, 10
	p, c := outlierPool(t, 3, o)
	cas1 := p.Backend("cas1")
	for range 4 { // 4 faults in 8 calls: the rate, but too few calls
		cas1.ObserveRPC(CallFault)
		cas1.ObserveRPC(CallOK)
	}
	c.advance(10 * time.Second) // a new interval: those 8 calls are forgotten
	for range 4 {
		cas1.ObserveRPC(CallFault)
		cas1.ObserveRPC(CallOK)
	}
	if _, ej := cas1.Ejected(); ej {
		t.Fatal("ejected with fewer than min_requests calls in the interval")
	}
	observe(cas1, CallOK, 2) // 4 faults in 10 calls: under 50%
	if _, ej := cas1.Ejected(); ej {
		t.Fatal("ejected at 40% faults; the rate is 50%")
	}
	cas1.ObserveRPC(CallFault) // 5 in 11: 45%
	cas1.ObserveRPC(CallFault) // 6 in 12: 50%
	if e, ej := cas1.Ejected(); !ej || e.Reason != FaultRate {
		t.Fatalf("6 faults in 12 calls: %+v, %v; want ejected for fault_rate", e, ej)
	}
}

// An ejection ends by itself at its time: no sweep, no call needed.
func TestEjectionEndsAtItsTime(t *testing.T) {
	p, c := outlierPool(t, 2, policy())
	cas1 := p.Backend("cas1")
	observe(cas1, CallFault, 5)
	c.advance(30*time.Second - 1)
	if cas1.TakesNew() {
		t.Fatal("ejection ended before its time")
	}
	c.advance(1)
	if _, ej := cas1.Ejected(); ej || !cas1.TakesNew() {
		t.Fatal("ejection did not end at its time")
	}
	got := false
	for i := range 100 {
		got = got || p.Choose(keyHash(i), nil) == cas1
	}
	if !got {
		t.Fatal("a backend whose ejection ended got no new clients")
	}
}

// Ejections in a row last 1, 2, 3... times the ejection time, never more
// than max_ejection_time; each interval out of ejection takes one off.
func TestEjectionTimeGrowsAndDecays(t *testing.T) {
	p, c := outlierPool(t, 2, policy())
	cas1 := p.Backend("cas1")
	var lengths []time.Duration
	for range 12 {
		observe(cas1, CallFault, 5)
		e, ej := cas1.Ejected()
		if !ej {
			t.Fatal("not ejected")
		}
		lengths = append(lengths, e.Until.Sub(c.now()))
		c.advance(e.Until.Sub(c.now())) // returned, and at once faulty again
	}
	for i, d := range lengths {
		want := min(time.Duration(i+1)*30*time.Second, 5*time.Minute)
		if d != want {
			t.Fatalf("ejection %d lasted %s, want %s (all: %v)", i+1, d, want, lengths)
		}
	}
	c.advance(35 * time.Second) // 3 intervals: the multiplier was 11, is 8, and this ejection makes it 9
	observe(cas1, CallFault, 5)
	if e, _ := cas1.Ejected(); e.Count != 9 || e.Until.Sub(c.now()) != 270*time.Second {
		t.Fatalf("after 3 quiet intervals: multiplier %d for %s, want 9 for 4m30s", e.Count, e.Until.Sub(c.now()))
	}
	c.advance(time.Hour)
	observe(cas1, CallFault, 5)
	if e, _ := cas1.Ejected(); e.Count != 1 {
		t.Fatalf("after an hour without ejection: multiplier %d, want 1", e.Count)
	}
}

// At most max_ejected_share of the pool is ejected at once, and one
// always may be: 50% of 4 is 2, 10% of 3 rounds to none and is 1.
func TestMaxEjectedShare(t *testing.T) {
	for _, tc := range []struct{ n, share, want int }{{4, 50, 2}, {3, 10, 1}, {5, 100, 4}} {
		o := policy()
		o.MaxEjectedShare = tc.share
		p, _ := outlierPool(t, tc.n, o)
		for _, b := range p.Backends() {
			observe(b, CallFault, 5)
		}
		ejected, refused := 0, uint64(0)
		for _, b := range p.Backends() {
			if _, ej := b.Ejected(); ej {
				ejected++
			}
			_, r := b.Ejections()
			refused += r
		}
		if ejected != tc.want || refused != uint64(tc.n-tc.want) {
			t.Errorf("%d backends, share %d%%: %d ejected, %d held back; want %d ejected", tc.n, tc.share, ejected, refused, tc.want)
		}
	}
}

// The last backend that could take a new client is never ejected: not
// when the others are down, drained or ejected.
func TestNeverEjectsTheLast(t *testing.T) {
	o := policy()
	o.MaxEjectedShare = 100
	p, _ := outlierPool(t, 3, o)
	cas1, cas2, cas3 := p.Backend("cas1"), p.Backend("cas2"), p.Backend("cas3")
	cas2.SetHealthy(false)
	cas3.SetAdminState(Drain)
	observe(cas1, CallFault, 50)
	if _, ej := cas1.Ejected(); ej {
		t.Fatal("ejected the only backend that takes new clients")
	}
	cas3.SetAdminState(Ready)
	observe(cas1, CallFault, 5)
	observe(cas3, CallFault, 5)
	_, ej1 := cas1.Ejected()
	_, ej3 := cas3.Ejected()
	if !ej1 || ej3 {
		t.Fatalf("cas1 ejected %v, cas3 ejected %v: want cas1 only, cas3 the last", ej1, ej3)
	}
}

// A pool whose other backends fail while one is ejected gives the
// ejected one new clients rather than none (Envoy's panic mode), and
// prefers a healthy backup to it.
func TestEjectedServesWhenNothingElseCan(t *testing.T) {
	p := New("p", config.Hash, append(specs(2), Spec{Name: "spare", Host: "10.0.0.9", Weight: 1, Backup: true}))
	p.SetOutlier(&Outlier{ConsecutiveFaults: 1, EjectionTime: time.Hour, MaxEjectionTime: time.Hour, Interval: time.Second, MaxEjectedShare: 100}, nil)
	cas1 := p.Backend("cas1")
	cas1.ObserveRPC(CallFault)
	if _, ej := cas1.Ejected(); !ej {
		t.Fatal("not ejected")
	}
	p.Backend("cas2").SetHealthy(false)
	if b := p.Choose(keyHash(1), nil); b == nil || b.Name != "spare" {
		t.Fatalf("cas2 down, cas1 ejected: chose %v, want the backup", b)
	}
	p.Backend("spare").SetHealthy(false)
	if b := p.Choose(keyHash(1), nil); b != cas1 || !p.TakesNew() {
		t.Fatalf("every other backend down: chose %v, want the ejected cas1", b)
	}
}

// OutlierChanges reports each ejection once and its end once, and says
// when to look again; the wake channel hears of an ejection.
func TestOutlierChangesReportOnce(t *testing.T) {
	p, c := outlierPool(t, 3, policy())
	wake := make(chan struct{}, 1)
	p.SetOutlier(p.Outlier(), wake)
	observe(p.Backend("cas2"), CallFault, 5)
	select {
	case <-wake:
	default:
		t.Fatal("an ejection did not wake the reader")
	}
	ch, next := p.OutlierChanges()
	if len(ch) != 1 || ch[0].Backend.Name != "cas2" || ch[0].Returned || !next.Equal(start.Add(30*time.Second)) {
		t.Fatalf("changes %+v, next %v", ch, next)
	}
	if ch, _ := p.OutlierChanges(); len(ch) != 0 {
		t.Fatalf("reported again: %+v", ch)
	}
	c.advance(30 * time.Second)
	ch, next = p.OutlierChanges()
	if len(ch) != 1 || !ch[0].Returned || !next.IsZero() {
		t.Fatalf("at its end: changes %+v, next %v", ch, next)
	}
}

// A reload keeps a surviving backend's ejection (Update keeps the
// object and the pool its detector); turning the policy off ends every
// ejection, and without a policy nothing is ejected.
func TestEjectionAcrossReload(t *testing.T) {
	p, _ := outlierPool(t, 3, policy())
	cas1 := p.Backend("cas1")
	observe(cas1, CallFault, 5)
	p.Update(config.Hash, specs(3))
	p.SetOutlier(p.Outlier(), nil)
	if _, ej := p.Backend("cas1").Ejected(); !ej || p.Backend("cas1") != cas1 {
		t.Fatal("a reload ended the ejection of a backend it kept")
	}
	p.SetOutlier(nil, nil)
	if _, ej := cas1.Ejected(); ej || !cas1.TakesNew() {
		t.Fatal("turning outlier ejection off left a backend ejected")
	}
	observe(cas1, CallFault, 50)
	observe(cas1, BindRejected, 50)
	if _, ej := cas1.Ejected(); ej {
		t.Fatal("ejected without a policy")
	}
}
