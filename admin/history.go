//go:build linux

package admin

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// The recent past, kept on the server: every backend's and listener's
// counters, sampled at a fixed interval into a bounded ring, so that the
// dashboard's charts are full the moment the page opens and `ctl
// backends` can give rates without waiting.

// historyLen bounds the ring: ten minutes at the default interval.
const historyLen = 300

// sample is the counters at one moment, by "pool/backend" and by
// listener name.
type sample struct {
	at        time.Time
	backends  map[string]backendCounters
	listeners map[string]uint64 // accepted
}

type backendCounters struct {
	conns          int64
	pins           int
	opened, failed uint64
	bytes          int64 // both ways
}

// history is the ring and the goroutine that fills it.
type history struct {
	mu      sync.Mutex
	samples []sample // oldest first
	cancel  context.CancelFunc
	done    chan struct{}
}

// startHistory samples now and then every Options.HistoryEvery until
// Close.
func (a *API) startHistory() {
	ctx, cancel := context.WithCancel(context.Background())
	a.hist.cancel, a.hist.done = cancel, make(chan struct{})
	a.sample()
	go func() {
		defer close(a.hist.done)
		t := time.NewTicker(a.opts.HistoryEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.sample()
			}
		}
	}()
}

// Close stops the sampling of history.
func (a *API) Close() {
	a.hist.cancel()
	<-a.hist.done
}

func (a *API) sample() {
	s := sample{at: time.Now(), backends: map[string]backendCounters{}, listeners: map[string]uint64{}}
	for _, p := range a.opts.Server.Pools() {
		pins := map[string]int{}
		if p.Table != nil {
			pins = p.Table.Counts()
		}
		for _, b := range p.Listed() {
			opened, failed := b.Totals()
			toB, toC := b.Bytes()
			s.backends[p.Name+"/"+b.Name] = backendCounters{conns: b.Active(), pins: pins[b.Name], opened: opened, failed: failed, bytes: toB + toC}
		}
	}
	for _, l := range a.opts.Server.Listeners() {
		s.listeners[l.Name] = l.Accepted
	}
	a.hist.mu.Lock()
	defer a.hist.mu.Unlock()
	if len(a.hist.samples) == historyLen {
		a.hist.samples = append(a.hist.samples[:0], a.hist.samples[1:]...)
	}
	a.hist.samples = append(a.hist.samples, s)
}

// HistoryPoint is one sample with the rates since the one before.
type HistoryPoint struct {
	Time      time.Time                `json:"time"`
	Backends  map[string]BackendPoint  `json:"backends"`  // by "pool/backend"
	Listeners map[string]ListenerPoint `json:"listeners"` // by name
}

// BackendPoint is a backend at one sample.
type BackendPoint struct {
	Connections int64   `json:"connections"`
	Pins        int     `json:"pins"`
	ConnsPerSec float64 `json:"connections_per_second"`
	ErrsPerSec  float64 `json:"connect_errors_per_second"`
	BytesPerSec float64 `json:"bytes_per_second"`
}

// ListenerPoint is a listener at one sample.
type ListenerPoint struct {
	ConnsPerSec float64 `json:"connections_per_second"`
}

// History is GET /api/history.
type History struct {
	IntervalSeconds float64        `json:"interval_seconds"`
	Points          []HistoryPoint `json:"points"`
}

// points returns the samples as points, each with its rates.
func (a *API) points() History {
	a.hist.mu.Lock()
	defer a.hist.mu.Unlock()
	h := History{IntervalSeconds: a.opts.HistoryEvery.Seconds(), Points: []HistoryPoint{}}
	for i := 1; i < len(a.hist.samples); i++ {
		prev, cur := a.hist.samples[i-1], a.hist.samples[i]
		dt := cur.at.Sub(prev.at).Seconds()
		pt := HistoryPoint{Time: cur.at.UTC(), Backends: map[string]BackendPoint{}, Listeners: map[string]ListenerPoint{}}
		for k, c := range cur.backends {
			bp := BackendPoint{Connections: c.conns, Pins: c.pins}
			if p, ok := prev.backends[k]; ok { // a backend new since has no rate yet
				bp.ConnsPerSec, bp.ErrsPerSec = rate(c.opened, p.opened, dt), rate(c.failed, p.failed, dt)
				bp.BytesPerSec = rate(uint64(c.bytes), uint64(p.bytes), dt)
			}
			pt.Backends[k] = bp
		}
		for k, n := range cur.listeners {
			if before, ok := prev.listeners[k]; ok {
				pt.Listeners[k] = ListenerPoint{ConnsPerSec: rate(n, before, dt)}
			}
		}
		h.Points = append(h.Points, pt)
	}
	return h
}

// rate is the change from before to now per second; a counter that went
// back (a listener re-opened by a reload) gives 0, not a negative rate.
func rate(now, before uint64, dt float64) float64 {
	if now < before || dt <= 0 {
		return 0
	}
	return float64(now-before) / dt
}

func (a *API) history(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, a.points()) }
