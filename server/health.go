//go:build linux

package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/health"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// ports returns the fixed backend ports of the listeners that use pool
// name (config.Listener.FixedPorts: 135 of "135,6005-59530" too), and a
// test of whether the pool forwards a backend port at all (listeners of
// several ports forward each port they take).
func (s *Server) ports(name string) ([]int, func(int) bool) {
	var ports []int
	var ranges []config.Ports
	follows := false // a listener follows the endpoint mapper: any port it hands out is reachable
	for _, lr := range s.listeners {
		if lr.cfg.Pool != name {
			continue
		}
		follows = follows || lr.cfg.InspectDCERPC
		for _, port := range lr.cfg.FixedPorts() {
			if !slices.Contains(ports, port) {
				ports = append(ports, port)
			}
		}
		ranges = append(ranges, lr.cfg.ClientPorts())
	}
	slices.Sort(ports)
	return ports, func(p int) bool {
		return follows || slices.Contains(ports, p) || slices.ContainsFunc(ranges, func(r config.Ports) bool { return r.Contains(p) })
	}
}

// stateKey names a check's state of one backend. A backend that comes
// back with another address is a new *pool.Backend, and starts afresh.
type stateKey struct {
	check string
	b     *pool.Backend
}

// startHealth (re)starts a pool's checkers, one per active check, on
// every backend port its listeners forward to. A backend keeps each
// check's verdict and streak across restarts; a check new to a backend
// that was in before needs Rise or Fall results to change its verdict,
// and a new backend takes its first result's.
func (s *Server) startHealth(p *poolRT, before []*pool.Backend) {
	s.stopHealth(p)
	// The checkers keep the pool config they started with: a reload
	// replaces p.cfg while they run, and restarts them after.
	pc := p.cfg
	checks := pc.ActiveChecks()
	ports, forwarded := s.ports(p.pool.Name)
	verdicts := &health.Verdicts{}
	checkers := make([]*health.Checker, 0, len(checks))
	states := map[stateKey]*health.State{}
	for _, ch := range checks {
		pr, err := probe(ch, ports, forwarded)
		if err != nil {
			s.log.Error("health check not started: its config does not compile", "pool", p.pool.Name, "error", err)
			continue
		}
		if pr == nil {
			continue // a TCP check of a pool with ranges only: check refuses it
		}
		var targets []health.Target
		for _, b := range p.pool.Backends() {
			k := stateKey{ch.Name, b}
			st := p.states[k]
			if st == nil {
				st = health.NewState(b.Healthy(), slices.Contains(before, b))
			}
			states[k] = st
			targets = append(targets, health.Target{Name: b.Name, Host: b.Host, State: st, Current: b.Healthy})
		}
		checkers = append(checkers, health.New(health.Config{
			Interval: ch.Interval.Duration, Timeout: ch.Timeout.Duration, Rise: ch.Rise, Fall: ch.Fall,
			Probes:   []health.Probe{pr},
			OnChange: func(c health.Change) { s.checkChanged(p.pool, pc, ch, verdicts, c) },
			OnResult: func(target string, err error, took time.Duration) {
				if b := p.pool.Backend(target); b != nil {
					b.RecordCheck(pool.Check{Name: ch.Name, At: time.Now(), Took: took, Err: errText(err)})
				}
				s.opts.Events.Publish(event.Event{Kind: event.Check, Pool: p.pool.Name, Backend: target, Err: err, Took: took})
			},
		}, targets))
	}
	p.states = states
	if len(checkers) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p.health, p.done = cancel, make(chan struct{})
	go runCheckers(ctx, checkers, p.done)
}

func runCheckers(ctx context.Context, checkers []*health.Checker, done chan struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	for _, c := range checkers {
		wg.Go(func() { c.Run(ctx) })
	}
	wg.Wait()
}

// checkChanged applies one check's change of verdict on a backend: the
// backend is up only while every check passes.
func (s *Server) checkChanged(pl *pool.Pool, pc *config.Pool, ch *config.Check, verdicts *health.Verdicts, c health.Change) {
	b := pl.Backend(c.Target)
	if b == nil {
		return
	}
	up := verdicts.Set(b.Name, ch.Name, c.Up)
	var changed bool
	switch {
	case up:
		changed = b.MarkUp()
	case !c.Up: // this check failed; when another still fails, its reason stays
		changed = b.MarkDown(fmt.Sprintf("check %s: %s", ch.Name, errText(c.Err)))
	}
	if !changed {
		return
	}
	if up {
		s.log.Info("backend up", "pool", pl.Name, "backend", b.Name)
	} else {
		s.log.Warn("backend down", "pool", pl.Name, "backend", b.Name, "check", ch.Name, "error", c.Err)
	}
	s.publishHealth(pl.Name, b.Name, up, c.Err)
	if !up && pc.CloseOnDown {
		s.closeBackend(b, proxy.EndCutBackendDown, "backend down and close_on_down is set")
	}
}

func (s *Server) stopHealth(p *poolRT) {
	if p.health != nil {
		p.health()
		<-p.done
		p.health = nil
	}
}

// errText is err's message on one line (a check of several ports joins
// their errors), "" for none.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// publishHealth tells the stream a backend went up or down.
func (s *Server) publishHealth(poolName, backend string, up bool, err error) {
	what := "up"
	if !up {
		what = fmt.Sprintf("down: %v", err)
	}
	s.opts.Events.Publish(event.Event{Kind: event.Health, Pool: poolName, Backend: backend, Up: up, Err: err, What: what})
}
