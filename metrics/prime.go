//go:build linux

package metrics

import (
	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/server"
)

// prime makes every labelled series of the current config exist, at 0
// until something counts: every listener, backend and reason is in the
// first scrape, so a rate() or an alert sees an increase from 0 instead
// of a series appearing mid-incident. It runs at each scrape (the config
// may have been reloaded) and costs a map lookup per series that exists.
func (m *Metrics) prime(s *server.Server) {
	cfg := s.Config()
	pools := map[string]server.PoolView{}
	for _, p := range s.Pools() {
		pools[p.Name] = p
		for _, why := range repinReasons {
			m.repins.WithLabelValues(p.Name, why)
		}
		depth := config.RPCOff
		if pc := cfg.Pools[p.Name]; pc != nil {
			depth = pc.DCERPC
		}
		for _, b := range p.Listed() {
			if depth != config.RPCOff {
				m.primeRPC(p.Name, b.Name, depth == config.RPCCalls)
			}
			m.healthTime.WithLabelValues(p.Name, b.Name)
			m.connectTime.WithLabelValues(p.Name, b.Name)
			m.stateChanges.WithLabelValues(p.Name, b.Name, "up")
			m.stateChanges.WithLabelValues(p.Name, b.Name, "down")
			for _, why := range proxy.DialFailures {
				m.healthFail.WithLabelValues(p.Name, b.Name, string(why))
			}
		}
	}
	for name, l := range cfg.Listeners {
		m.accepted.WithLabelValues(name)
		m.duration.WithLabelValues(name)
		for _, why := range proxy.Refusals {
			m.refused.WithLabelValues(name, string(why))
		}
		for _, end := range proxy.Terminations {
			m.ended.WithLabelValues(name, string(end))
		}
		p, ok := pools[l.Pool]
		if !ok {
			continue
		}
		for _, b := range p.Listed() {
			m.active.WithLabelValues(name, p.Name, b.Name)
			m.closed.WithLabelValues(name, p.Name, b.Name)
			for _, why := range proxy.DialFailures {
				m.connectErrors.WithLabelValues(name, p.Name, b.Name, string(why))
			}
		}
	}
}

// repinReasons are the reasons a pin moves: the named ones and the ways a
// connect fails.
var repinReasons = func() []string {
	out := []string{string(affinity.RepinDown), string(affinity.RepinMaint), string(affinity.RepinRemoved), string(affinity.RepinFailback),
		string(affinity.RepinPeer)} // peer: moved by another cluster member
	for _, f := range proxy.DialFailures {
		out = append(out, string(f))
	}
	return out
}()
