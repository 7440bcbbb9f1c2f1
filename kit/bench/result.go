//go:build linux

package bench

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Result is what a run measured.
type Result struct {
	Target   string        `json:"target"`
	Mode     Mode          `json:"mode"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	// The run's parameters, as Config had them after defaults.
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Size        int     `json:"size"`
	Removed     string  `json:"removed,omitempty"`
	// RemovedAt is when the event ran, in seconds into the run.
	RemovedAt  float64          `json:"removed_at_seconds,omitempty"`
	Conns      int64            `json:"connections"`
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds"`
	CPS        float64          `json:"connections_per_second"`
	MBps       float64          `json:"throughput_mb_per_second"`
	Latency    Latency          `json:"latency_ms"`
	// Affinity: clients seen on more than one backend while they should
	// have stayed pinned.
	Clients    int            `json:"clients"`
	Violations int            `json:"affinity_violations"`
	PerBackend map[string]int `json:"clients_per_backend"`
	// PerBackendBefore counts clients by their backend before the event,
	// when there was one: the removed backend is in it.
	PerBackendBefore map[string]int `json:"clients_per_backend_before,omitempty"`
	Balance          Balance        `json:"balance"`
	Remap            *Remap         `json:"remap,omitempty"`
	Timeline         []int64        `json:"connections_per_second_timeline"`
	Histogram        []Bucket       `json:"latency_histogram"`
}

// Latency percentiles in milliseconds.
type Latency struct{ P50, P90, P99, P999, Max float64 }

// Balance of clients over backends.
type Balance struct {
	MaxOverMean float64 `json:"max_over_mean"`
	CV          float64 `json:"coefficient_of_variation"`
}

// Remap is how many clients changed backend across the run's event.
type Remap struct {
	Compared   int     `json:"clients_compared"`
	Moved      int     `json:"moved"`
	MovedShare float64 `json:"moved_share"`
	Ideal      float64 `json:"ideal_share"`
}

// Bucket is one bar of the latency histogram.
type Bucket struct {
	UpToMs float64 `json:"up_to_ms"`
	Count  int64   `json:"count"`
}

func (r *runner) result(d time.Duration) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{Target: r.cfg.Target, Mode: r.cfg.Mode, Started: r.start, Duration: d, Concurrency: r.cfg.Concurrency,
		Rate: r.cfg.Rate, Size: r.cfg.Size, Removed: r.cfg.Removed, Conns: r.conns.Load(), Errors: r.errs.Load(),
		ErrorKinds: r.errKind, PerBackend: map[string]int{}}
	if r.cfg.Event != nil {
		res.RemovedAt = r.eventAt.Seconds()
	}
	res.CPS = float64(res.Conns) / d.Seconds()
	res.MBps = float64(r.bytes.Load()) / d.Seconds() / 1e6
	ms := func(us int64) float64 { return float64(us) / 1000 }
	h := r.hist
	res.Latency = Latency{ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90)), ms(h.ValueAtQuantile(99)), ms(h.ValueAtQuantile(99.9)), ms(h.Max())}
	for _, b := range h.Distribution() {
		if b.Count > 0 {
			res.Histogram = append(res.Histogram, Bucket{UpToMs: ms(b.To), Count: b.Count})
		}
	}
	secs := int(math.Ceil(d.Seconds()))
	for s := range secs {
		res.Timeline = append(res.Timeline, r.perSec[s])
	}
	res.score(r.obs, r.eventAt, r.cfg.Event != nil, r.cfg.Removed)
	return res
}

// score computes affinity violations, balance and remapping.
func (res *Result) score(obs []observation, eventAt time.Duration, hasEvent bool, removed string) {
	stories, last := tell(obs, eventAt, hasEvent, removed)
	res.Clients = len(stories)
	for _, b := range last {
		res.PerBackend[b]++
	}
	res.scoreStories(stories, hasEvent, removed)
	res.Balance = balanceOf(res.PerBackend, res.Clients)
}

// story is the backends one client reached before the event and after it.
type story struct{ before, after []string }

// tell sorts the observations into each client's story, and returns the
// backend each client reached last.
func tell(obs []observation, eventAt time.Duration, hasEvent bool, removed string) (map[int]*story, map[int]string) {
	sort.SliceStable(obs, func(i, j int) bool { return obs[i].at < obs[j].at })
	stories, last := map[int]*story{}, map[int]string{}
	add := func(list []string, b string) []string {
		if slices.Contains(list, b) {
			return list
		}
		return append(list, b)
	}
	for _, o := range obs {
		s := stories[o.client]
		if s == nil {
			s = &story{}
			stories[o.client] = s
		}
		switch {
		case !hasEvent || o.at < eventAt:
			s.before = add(s.before, o.backend)
		case o.backend != removed:
			// A greeting from the removed backend just after the event
			// is a connection made just before it.
			s.after = add(s.after, o.backend)
		}
		last[o.client] = o.backend
	}
	return stories, last
}

// scoreStories counts broken pins and, with an event, the clients moved
// and where clients were before it.
func (res *Result) scoreStories(stories map[int]*story, hasEvent bool, removed string) {
	var rm Remap
	backendsBefore := map[string]bool{}
	for _, s := range stories {
		// Seeing several backends in one phase, or moving off a backend
		// that was not removed, is a broken pin.
		bad := len(s.before) > 1 || len(s.after) > 1
		if len(s.before) == 1 && len(s.after) == 1 {
			rm.Compared++
			backendsBefore[s.before[0]] = true
			if s.before[0] != s.after[0] {
				rm.Moved++
				bad = bad || s.before[0] != removed
			}
		}
		if bad {
			res.Violations++
		}
	}
	if !hasEvent {
		return
	}
	res.PerBackendBefore = map[string]int{}
	for _, s := range stories {
		if len(s.before) > 0 {
			res.PerBackendBefore[s.before[len(s.before)-1]]++
		}
	}
	if rm.Compared > 0 {
		rm.MovedShare = float64(rm.Moved) / float64(rm.Compared)
		rm.Ideal = 1 / float64(len(backendsBefore))
		res.Remap = &rm
	}
}

// balanceOf is how evenly clients spread over the backends they reached.
func balanceOf(perBackend map[string]int, clients int) Balance {
	n := len(perBackend)
	if n == 0 {
		return Balance{}
	}
	mean := float64(clients) / float64(n)
	var maxV, sq float64
	for _, c := range perBackend {
		maxV = math.Max(maxV, float64(c))
		sq += (float64(c) - mean) * (float64(c) - mean)
	}
	return Balance{MaxOverMean: maxV / mean, CV: math.Sqrt(sq/float64(n)) / mean}
}
