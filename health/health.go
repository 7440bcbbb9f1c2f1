// Package health runs active checks against backend hosts and reports when
// a host goes up or down.
//
// A Checker probes each Target every Interval. A host is up only when every
// Probe passes (for the TCP probe: every service port of the pool accepts a
// connection), because a CAS whose Address Book port is dead is no use to a
// MAPI client even if port 135 answers. Rise consecutive passes bring a
// down host up, Fall consecutive failures take an up host down; a host
// never checked before takes the verdict of its first check at once, so a
// backend that is dead at start-up gets no clients. Every probe has a
// deadline. The Checker only reports; what a state change means is up to
// its caller.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/stickylb/stickylb/localerr"
)

// Probe checks one host once.
type Probe interface {
	Probe(ctx context.Context, host string) error
}

// TCP is a Probe that connects to every one of Ports.
type TCP struct {
	Ports []int
	// Dialer is used for the connections; nil means a plain net.Dialer.
	Dialer *net.Dialer
}

// Probe connects to every port at once and fails with every failure.
func (t TCP) Probe(ctx context.Context, host string) error {
	d := t.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	return each(ctx, host, t.Ports, func(ctx context.Context, addr string) error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp connect %s: %w", addr, err)
		}
		// A reset instead of a FIN spares the server a TIME_WAIT per
		// check, as HAProxy does.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return c.Close()
	})
}

// State is what a check knows of one target: its verdict, whether it has
// one yet, and the streak of results that disagree with it. It outlives
// a Checker, so a reload that restarts the checkers keeps every streak: a
// failing host still goes down after Fall failures however often the
// config is reloaded. One Checker at a time may use a State.
type State struct {
	up, known bool
	streak    int
}

// NewState starts a target's state: up or down, and known (a verdict
// exists, so changing it takes Rise or Fall results) or not (the first
// result decides at once).
func NewState(up, known bool) *State { return &State{up: up, known: known} }

// Target is a host to check.
type Target struct {
	Name string
	Host string
	// State carries the verdict and streak across checkers; nil starts
	// unknown.
	State *State
	// Current, if set, reports the host's state as others see it: when
	// something else (a passive check) took it down, the checker adopts
	// that and needs Rise passes to bring it back.
	Current func() bool
}

// Change is a host's move to up or down.
type Change struct {
	Target   string
	Up       bool
	Err      error // the failure that took it down; nil for up
	Duration time.Duration
}

// Config sets a Checker up.
type Config struct {
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
	Probes   []Probe
	// OnChange is called, from the target's goroutine, when a host goes
	// up or down.
	OnChange func(Change)
	// OnResult, if set, is called after every check (for metrics).
	OnResult func(target string, err error, took time.Duration)
}

// Checker checks a set of targets until its context ends.
type Checker struct {
	cfg     Config
	targets []Target
}

// New makes a Checker. Call Run to start it.
func New(cfg Config, targets []Target) *Checker {
	return &Checker{cfg: cfg, targets: targets}
}

// Run checks every target, each in its own goroutine, until ctx is done,
// and returns when they have all stopped.
func (c *Checker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range c.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watch(ctx, t)
		}()
	}
	wg.Wait()
}

func (c *Checker) watch(ctx context.Context, t Target) {
	st := t.State
	if st == nil {
		st = &State{}
	}
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		start := time.Now()
		err := c.check(ctx, t.Host)
		took := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		if c.cfg.OnResult != nil {
			c.cfg.OnResult(t.Name, err, took)
		}
		// A probe that could not even be made here (out of file
		// descriptors, ports, buffers) says nothing about the target.
		if !localerr.Is(err) {
			c.judge(st, t, err, took)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// judge applies one result to a target's state and reports a change.
func (c *Checker) judge(st *State, t Target, err error, took time.Duration) {
	pass := err == nil
	if st.known && t.Current != nil {
		if cur := t.Current(); cur != st.up {
			st.up, st.streak = cur, 0
		}
	}
	switch {
	case !st.known:
		st.known, st.up, st.streak = true, pass, 0
		if !pass {
			c.report(Change{Target: t.Name, Up: false, Err: err, Duration: took})
		}
	case pass == st.up:
		st.streak = 0
	default:
		st.streak++
		need := c.cfg.Fall
		if !st.up {
			need = c.cfg.Rise
		}
		if st.streak >= need {
			st.up, st.streak = pass, 0
			c.report(Change{Target: t.Name, Up: st.up, Err: err, Duration: took})
		}
	}
}

func (c *Checker) report(ch Change) {
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(ch)
	}
}

func (c *Checker) check(ctx context.Context, host string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var errs []error
	for _, p := range c.cfg.Probes {
		if err := p.Probe(ctx, host); err != nil {
			errs = append(errs, err)
		}
	}
	// Clipped here as well as per port, so that nothing a Checker hands
	// to OnResult or OnChange, for its callers to store, is long.
	return clipError(errors.Join(errs...), maxCheckErrText)
}
