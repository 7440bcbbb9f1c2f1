package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// FleetConfig describes a simulated Unity client fleet.
type FleetConfig struct {
	// Target is the balancer's address (host only); EPMPort its endpoint
	// mapper port. The service ports come from the endpoint mapper, as
	// for a real MAPI client.
	Target  string
	EPMPort int
	// Targets, when set, replaces Target with several balancers: each
	// connection goes to the next, as a router's ECMP or round-robin DNS
	// spreads flows over the members of a balancer cluster. SetTargets
	// changes them during a run, as a router withdraws a dead member.
	Targets []string
	// Sources are the client source addresses, used in turn by the
	// sessions (Unity is one server or a pair). Empty: the OS chooses.
	Sources []string
	// Sessions is the number of mailbox sessions (default 24).
	Sessions int
	// Duration is how long the fleet works (default 10s).
	Duration time.Duration
	// OpInterval is the mean pause between a session's operations
	// (default 50ms).
	OpInterval time.Duration
	// Timeout bounds each dial and each request (default 2s).
	Timeout time.Duration
	// Seed makes the operation mix repeatable.
	Seed uint64
	// OnError, when set, is told of each failure as it happens, on the
	// session's goroutine (the soak lays them beside its faults).
	OnError func(Failure)
}

// Failure is one failure a session saw, as it happened.
type Failure struct {
	Time    time.Time
	Session int
	Mailbox string
	// CAS holds the session's logon ("" before its first); Server is,
	// for MAPI_E_NETWORK_ERROR, the CAS that replied.
	CAS, Server string
	// Via is the balancer host the connection went to, when known.
	Via string
	// Kind is "MAPI_E_NETWORK_ERROR" or the network failure's cause.
	Kind string
	// Long: a connection that had answered before was cut (a
	// long-lived connection, or one cut between request and reply).
	Long bool
}

// Report is what a fleet run found.
type Report struct {
	Target            string         `json:"target"`
	Duration          time.Duration  `json:"duration_ns"`
	Sessions          int            `json:"sessions"`
	Ops               int64          `json:"operations"`
	OK                int64          `json:"ok"`
	MAPINetworkErrors int64          `json:"mapi_e_network_error"`
	ConnErrors        int64          `json:"connection_errors"`
	OtherErrors       int64          `json:"other_errors"`
	Logons            int64          `json:"logons"`
	Relogons          int64          `json:"relogons"`
	ErrorRate         float64        `json:"mapi_e_network_error_rate"`
	Latency           Latency        `json:"latency_ms"`
	SessionsPerCAS    map[string]int `json:"sessions_per_cas"`
	SplitSessions     int            `json:"split_sessions"`
	// Errors counts every failure by kind: MAPI_E_NETWORK_ERROR, other
	// status codes, and network failures by cause.
	Errors        map[string]int  `json:"errors"`
	ErrorSessions int             `json:"sessions_with_errors"`
	PerSession    []SessionReport `json:"per_session"`
}

// Latency percentiles of successful operations, in milliseconds.
type Latency struct {
	P50, P90, P99, P999, Max float64
}

// SessionReport is one mailbox session's story.
type SessionReport struct {
	ID      int    `json:"id"`
	Mailbox string `json:"mailbox"`
	Source  string `json:"source"`
	// CAS lists the server of each logon, in order; more than one means
	// the session had to log on again.
	CAS               []string `json:"cas"`
	Ops               int      `json:"operations"`
	MAPINetworkErrors int      `json:"mapi_e_network_error"`
	ConnErrors        int      `json:"connection_errors"`
	// Split: within one logon, some request was answered by another CAS
	// than the one holding the session.
	Split bool `json:"split"`
}

// Fleet is a running or finished client fleet.
type Fleet struct {
	cfg                        FleetConfig
	ops, netErrs, connErrs, ok atomic.Int64
	targets                    atomic.Pointer[[]string]
	next                       atomic.Uint64
}

// SetTargets makes later connections go to these balancers, in turn.
func (f *Fleet) SetTargets(hosts []string) {
	hosts = slices.Clone(hosts)
	f.targets.Store(&hosts)
}

// target is the balancer the next connection goes to.
func (f *Fleet) target() string {
	t := *f.targets.Load()
	return t[(f.next.Add(1)-1)%uint64(len(t))]
}

// NewFleet fills in defaults.
func NewFleet(cfg FleetConfig) *Fleet {
	if cfg.Sessions <= 0 {
		cfg.Sessions = 24
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.OpInterval <= 0 {
		cfg.OpInterval = 50 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	f := &Fleet{cfg: cfg}
	if len(cfg.Targets) > 0 {
		f.SetTargets(cfg.Targets)
	} else {
		f.SetTargets([]string{cfg.Target})
	}
	return f
}

// Progress returns live totals: operations, MAPI_E_NETWORK_ERRORs and
// connection errors so far.
func (f *Fleet) Progress() (ops, mapiErrors, connErrors int64) {
	return f.ops.Load(), f.netErrs.Load(), f.connErrs.Load()
}

// Run works for the configured duration (or until ctx ends) and reports.
func (f *Fleet) Run(ctx context.Context) *Report {
	// The run ends by cancellation, not by a deadline on the context: a
	// dial given a deadline context times out on its own timer, a moment
	// before ctx.Err() is set, and would look like a network failure.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.AfterFunc(f.cfg.Duration, cancel)
	defer end.Stop()
	start := time.Now()
	sessions := make([]*mailbox, f.cfg.Sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		src := ""
		if len(f.cfg.Sources) > 0 {
			src = f.cfg.Sources[i%len(f.cfg.Sources)]
		}
		s := &mailbox{f: f, rep: SessionReport{ID: i, Mailbox: fmt.Sprintf("unity-mbx-%03d", i), Source: src},
			rng:  rand.New(rand.NewPCG(f.cfg.Seed, uint64(i))),
			hist: hdrhistogram.New(1, 60_000_000, 2)}
		sessions[i] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx)
		}()
	}
	wg.Wait()
	return f.report(sessions, time.Since(start))
}

func (f *Fleet) report(sessions []*mailbox, d time.Duration) *Report {
	var targets []string
	for _, h := range *f.targets.Load() {
		targets = append(targets, net.JoinHostPort(h, strconv.Itoa(f.cfg.EPMPort)))
	}
	r := &Report{Target: strings.Join(targets, ","), Duration: d,
		Sessions: len(sessions), SessionsPerCAS: map[string]int{}, Errors: map[string]int{}}
	h := hdrhistogram.New(1, 60_000_000, 2)
	for _, s := range sessions {
		h.Merge(s.hist)
		for k, v := range s.errs {
			r.Errors[k] += v
		}
		r.PerSession = append(r.PerSession, s.rep)
		r.Ops += int64(s.rep.Ops)
		r.MAPINetworkErrors += int64(s.rep.MAPINetworkErrors)
		r.ConnErrors += int64(s.rep.ConnErrors)
		r.OtherErrors += s.other
		r.Logons += int64(len(s.rep.CAS))
		if n := len(s.rep.CAS); n > 0 {
			r.Relogons += int64(n - 1)
			r.SessionsPerCAS[s.rep.CAS[n-1]]++
		}
		if s.rep.Split {
			r.SplitSessions++
		}
		if s.rep.MAPINetworkErrors+s.rep.ConnErrors > 0 {
			r.ErrorSessions++
		}
	}
	r.OK = f.ok.Load()
	if r.Ops > 0 {
		r.ErrorRate = float64(r.MAPINetworkErrors) / float64(r.Ops)
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	r.Latency = Latency{P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
	return r
}
