//go:build linux

package soak

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/kit/sim"
)

// warmUp is how long the fleet works before the first fault, and when
// the growth baseline is taken.
const warmUp = 10 * time.Second

// Result is what a run found.
type Result struct {
	Seed     uint64
	Duration time.Duration
	Faults   []Fault
	Fleet    *sim.Report
	Verdicts []Verdict
	Timeline string            // the text timeline
	SVG      string            // the picture
	Logs     map[string]string // each process's log (stderr) by name, all its starts
}

// Pass says whether every invariant held.
func (res *Result) Pass() bool {
	for _, v := range res.Verdicts {
		if !v.Pass {
			return false
		}
	}
	return true
}

// Run starts the rig, runs the seed's schedule under the fleet, checks
// the invariants and stops everything.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Sessions <= 0 {
		cfg.Sessions = 24
	}
	if cfg.Duration < warmUp+quietEnd+10*time.Second {
		return nil, fmt.Errorf("soak of %s: give at least %s (warm-up %s, quiet end %s)", cfg.Duration, warmUp+quietEnd+10*time.Second, warmUp, quietEnd)
	}
	r, err := startRig(cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	r.start = time.Now()
	faults := Schedule(cfg.Seed, warmUp, cfg.Duration, Kinds(cfg.Isolated))
	reports := r.runFleet(ctx)
	stopPoll := r.pollAdmin()
	time.Sleep(warmUp - time.Second)
	base := r.usage()
	var wg sync.WaitGroup
	for _, f := range faults {
		if !sleepUntil(ctx, r.start.Add(f.At)) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.inject(f); err != nil {
				r.note(f.target(), "fault step failed: %v", err)
				r.mu.Lock()
				r.readyErr = append(r.readyErr, note{At: r.since(), Lane: f.target(), What: err.Error()})
				r.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sleepUntil(ctx, r.start.Add(cfg.Duration-2*time.Second))
	end := r.usage()
	rep := <-reports
	stopPoll()
	res := &Result{Seed: cfg.Seed, Duration: r.since(), Faults: faults, Fleet: rep}
	res.Verdicts = r.check(faults, rep, base, end)
	res.Timeline = r.timeline(res)
	res.SVG = r.svg(res)
	res.Logs = map[string]string{}
	for _, m := range slices.Concat(r.members, r.cas) {
		res.Logs[m.name], _ = m.logSince(0)
	}
	return res, nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	tm := time.NewTimer(time.Until(t))
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// inject carries out one fault, its recovery included.
func (r *rig) inject(f Fault) error {
	r.note(f.target(), "%s", f)
	switch f.Kind {
	case MemberKill:
		m := r.members[f.Target]
		r.route(m, false)
		if err := m.kill(); err != nil {
			return err
		}
		time.Sleep(f.For)
		if err := m.start(); err != nil {
			return err
		}
		if err := waitFor(20*time.Second, m.name+" ready after restart", func() bool { return m.ready() == nil }); err != nil {
			return err
		}
		r.route(m, true)
		r.note(m.name, "restarted and ready")
	case MemberStop, CASStop:
		m := r.members[f.Target%3]
		if f.Kind == CASStop {
			m = r.cas[f.Target]
		}
		if err := m.signal(syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(f.For)
		if err := m.signal(syscall.SIGCONT); err != nil {
			return err
		}
		r.note(m.name, "SIGCONT")
	case CASKill:
		return r.casKill(f)
	case CASMaint, CASDrain:
		return r.adminState(f)
	case ReloadGood, ReloadBad:
		return r.reload(f)
	case Upgrade:
		return r.upgrade(f)
	case UpgradeBad:
		return r.upgradeBad(f)
	case Partition:
		return r.partition(f)
	case DiskFull:
		return r.diskFull(f)
	}
	return nil
}

// casKill kills a CAS, brings it back, and looks for the backend's
// events on every member.
func (r *rig) casKill(f Fault) error {
	c := r.cas[f.Target]
	killed := time.Now()
	if err := c.kill(); err != nil {
		return err
	}
	time.Sleep(f.For)
	if err := c.start(); err != nil {
		return err
	}
	r.note(c.name, "restarted")
	for _, m := range r.members {
		if m.pid() == 0 {
			continue
		}
		if err := waitFor(10*time.Second, m.name+"'s event for "+c.name+" going down", func() bool { return r.hasEvent(m, c.name, killed) }); err != nil {
			return fmt.Errorf("no event on %s for %s killed at %.1fs: %w", m.name, c.name, killed.Sub(r.start).Seconds(), err)
		}
	}
	return nil
}

// adminState sets maint or drain on a CAS from one member and ready
// from another, and sees the first reach every member.
func (r *rig) adminState(f Fault) error {
	c := fmt.Sprintf("cas%d", f.Target+1)
	state := "maint"
	if f.Kind == CASDrain {
		state = "drain"
	}
	from := r.answering(f.From)
	asked := time.Now()
	if _, err := from.ctl(state, c); err != nil {
		return err
	}
	// The operator's decision shows in the member's list of changes.
	if err := waitFor(5*time.Second, from.name+"'s event for "+state+" "+c, func() bool { return r.hasEvent(from, c, asked) }); err != nil {
		return err
	}
	time.Sleep(f.For)
	to := r.answering((f.From + 1) % 3)
	if _, err := to.ctl("ready", c); err != nil {
		return err
	}
	r.note(c, "ready (from %s)", to.name)
	return nil
}

// answering is member i, or when a fault of its own has it down or
// stopped, the next that answers: an operator uses a member that does.
func (r *rig) answering(i int) *member {
	for k := range len(r.members) {
		if m := r.members[(i+k)%len(r.members)]; m.ready() == nil {
			return m
		}
	}
	return r.members[i]
}

// reload writes a new or a broken config and sends SIGHUP; after a bad
// one, the member must still be ready, and the good file comes back.
func (r *rig) reload(f Fault) error {
	m := r.members[f.Target]
	text := r.config(m, int(f.At/time.Second))
	if f.Kind == ReloadBad {
		text += "[pool.cas.health]\ninterval = \"soon\"\n"
	}
	if err := m.writeConfig(text); err != nil {
		return err
	}
	if err := m.signal(syscall.SIGHUP); err != nil {
		return err
	}
	if f.Kind == ReloadGood {
		return nil
	}
	time.Sleep(time.Second)
	err := m.ready()
	if werr := m.writeConfig(r.config(m, 0)); werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("after a bad reload: %w", err)
	}
	return nil
}

// pollAdmin asks every member's /readyz twice a second, and keeps the
// failures of a member that no fault of its own explains.
func (r *rig) pollAdmin() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, m := range r.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				if err := m.ready(); err != nil {
					r.mu.Lock()
					r.readyErr = append(r.readyErr, note{At: r.since(), Lane: m.name, What: err.Error()})
					r.mu.Unlock()
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

// WriteFiles writes the timeline, the picture and the logs into dir.
func (res *Result) WriteFiles(dir string) error {
	files := map[string]string{"timeline.txt": res.Timeline, "timeline.svg": res.SVG}
	for name, log := range res.Logs {
		files[name+".log"] = log
	}
	for name, body := range files {
		if err := os.WriteFile(dir+"/"+name, []byte(body), 0o644); err != nil {
			return fmt.Errorf("write soak %s: %w", name, err)
		}
	}
	return nil
}
