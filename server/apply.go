//go:build linux

package server

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// apply makes cfg current. Everything that can fail (binding) happens
// first; the rest cannot fail. Health checks restart last, since the
// ports they probe are the listeners'.
func (s *Server) apply(cfg *config.Config, running bool) error {
	if err := s.capable(cfg); err != nil {
		return err
	}
	fresh, err := s.bindNew(cfg)
	if err != nil {
		return err
	}
	restart := s.applyPools(cfg)
	s.applyListeners(cfg, fresh, running)
	if running {
		for p, before := range restart {
			s.startHealth(p, before)
		}
	}
	s.current.Store(cfg)
	s.decisions.Known(s.knownBackends())
	s.Reloads.Add(1)
	s.LastReload.Store(time.Now().Unix())
	return nil
}

// capable says, before anything changes, whether this process can do what
// cfg asks of the kernel beyond listening: transparent dials. Without the
// capability nothing could work, so the config is refused; without the
// return route the log says so at once, rather than every connection
// timing out.
func (s *Server) capable(cfg *config.Config) error {
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		if !cfg.Pools[name].Transparent {
			continue
		}
		if err := proxy.CheckTransparent(); err != nil {
			return fmt.Errorf("pool %s: %w", name, err)
		}
		if err := proxy.CheckTransparentRoute(); err != nil {
			s.log.Warn("transparent mode will not work as routed now", "pool", name, "error", err)
		}
	}
	return nil
}

// bindKey identifies a listener across reloads by its address, so a
// renamed listener keeps its socket. Port 0 binds anew each time.
func bindKey(l *config.Listener) string {
	if ap := l.Addr(); ap.Port() != 0 {
		return ap.String()
	}
	return l.Name + "/" + l.Listen
}

// bindNew binds the listeners of cfg that are not bound yet, by bind key.
// If one fails, those it bound are closed again.
func (s *Server) bindNew(cfg *config.Config) (map[string]*proxy.Listener, error) {
	fresh := map[string]*proxy.Listener{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		lc := cfg.Listeners[name]
		k := bindKey(lc)
		if _, ok := s.listeners[k]; ok {
			continue
		}
		l, err := s.opts.Inherited.Listen(s.ctx, lc, cfg.Pools[lc.Pool].Keepalive.Duration, s.log, cfg.ReservedPorts(lc)...)
		if err != nil {
			for _, f := range fresh {
				f.Close()
			}
			return nil, err
		}
		fresh[k] = l
	}
	return fresh, nil
}

// applyPools creates, updates and removes pools. It returns each pool
// kept or made with the backends it had before, for the health restart.
func (s *Server) applyPools(cfg *config.Config) map[*poolRT][]*pool.Backend {
	restart := map[*poolRT][]*pool.Backend{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Pools)) {
		pc := cfg.Pools[name]
		p, ok := s.pools[name]
		var before []*pool.Backend
		if ok {
			before = p.pool.Backends()
			sps := specs(pc)
			for i := range sps {
				// A backend a reload adds in a cluster waits until the
				// others are known to have it (recheck, in Reload).
				sps[i].Pending = s.cluster.Load() != nil && p.pool.Backend(sps[i].Name) == nil
			}
			for _, b := range p.pool.Update(pc.Balance, sps) {
				s.log.Info("backend removed; its clients will be re-pinned", "pool", name, "backend", b.Name)
			}
		} else {
			p = &poolRT{pool: pool.New(name, pc.Balance, specs(pc))}
			s.pools[name] = p
		}
		p.pool.SetSlowStart(pc.SlowStart.Duration)
		// A backend the reload keeps keeps its ejection, and its pool the
		// multipliers; a pool whose table is gone ejects no more.
		p.pool.SetOutlier(outlierPolicy(pc), s.outliers)
		if p.cfg == nil || p.cfg.Limits != pc.Limits {
			p.limiter = proxy.NewLimiter(proxy.ClientLimits{MaxConnsPerClient: pc.Limits.MaxConnsPerClient,
				Rate: rate.Limit(pc.Limits.ConnRatePerClient), Burst: pc.Limits.ConnBurstPerClient,
				V4Prefix: pc.Limits.IPv4Prefix, V6Prefix: pc.Limits.IPv6Prefix})
		}
		s.applyTable(p, pc)
		restart[p] = before
	}
	for name, p := range s.pools {
		if _, ok := cfg.Pools[name]; !ok {
			s.stopHealth(p)
			delete(s.pools, name)
			s.log.Info("pool removed", "pool", name)
		}
	}
	s.publishPools()
	return restart
}

// applyTable keeps a pool's affinity table when its key is unchanged,
// with the new TTL and bound, and starts an empty one when it changed.
func (s *Server) applyTable(p *poolRT, pc *config.Pool) {
	kr := keyer(pc)
	switch {
	case kr.Kind == config.NoPins:
		p.table = nil
	case p.table != nil && kr == p.keyer:
		p.table.SetTTL(pc.Affinity.TTL.Duration)
		p.table.Resize(pc.Affinity.MaxEntries)
		p.table.SetNewPinRate(pc.Affinity.NewPinsPerSecond)
		p.table.SetPrefixRule(prefixRule(pc))
	default:
		if p.table != nil {
			s.log.Warn("affinity key changed; pool starts with an empty table", "pool", pc.Name, "key", kr.Kind)
		}
		p.table = affinity.NewTable(affinity.Config{
			TTL: pc.Affinity.TTL.Duration, MaxEntries: pc.Affinity.MaxEntries, NewPinsPerSecond: pc.Affinity.NewPinsPerSecond,
			Prefix: prefixRule(pc), OnEvent: s.pinEvent(pc.Name, p),
		})
	}
	p.keyer, p.cfg = kr, pc
}

// prefixRule is pool pc's bound on the pins of one client prefix, which
// is the prefix its per-client limits count by.
func prefixRule(pc *config.Pool) affinity.PrefixRule {
	return affinity.PrefixRule{V4: pc.Limits.IPv4Prefix, V6: pc.Limits.IPv6Prefix, Max: pc.Affinity.PrefixQuota()}
}

// applyListeners gives every listener of cfg its new route, serves the
// fresh ones (when running) and retires those cfg dropped: they stop
// accepting and their open connections run on.
func (s *Server) applyListeners(cfg *config.Config, fresh map[string]*proxy.Listener, running bool) {
	next := map[string]*listenerRT{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		lc := cfg.Listeners[name]
		k := bindKey(lc)
		lr := s.listeners[k]
		if lr == nil {
			lr = &listenerRT{l: fresh[k]}
			if running {
				s.serve(lr.l)
			}
			if ports, how := lr.l.Ports(); ports.Count() > 1 {
				s.log.Info("listening", "listener", name, "addr", lr.l.Addr(), "pool", lc.Pool, "ports", ports.String(), "taken_by", how)
			} else {
				s.log.Info("listening", "listener", name, "addr", lr.l.Addr(), "pool", lc.Pool)
			}
		}
		lr.cfg = lc
		lr.l.SetRoute(s.route(lc, s.pools[lc.Pool]))
		next[k] = lr
	}
	for k, lr := range s.listeners {
		if _, ok := next[k]; !ok {
			lr.l.Close()
			s.retired = append(s.retired, lr.l)
			s.log.Info("listener removed; its open connections run on", "listener", lr.cfg.Name, "addr", lr.l.Addr())
		}
	}
	s.listeners = next
	s.pruneRetired()
}

// pruneRetired forgets retired listeners whose last connection has
// ended; s.mu is held.
func (s *Server) pruneRetired() {
	s.retired = slices.DeleteFunc(s.retired, func(l *proxy.Listener) bool { return l.Active() == 0 })
}
