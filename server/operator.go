//go:build linux

package server

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stickylb/stickylb/event"

	"github.com/stickylb/stickylb/operator"
	"github.com/stickylb/stickylb/persist"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// The operators' decisions about backends are package operator's: the
// server makes one at its API's request (SetState, SetWeight), shares it
// with the cluster, tells the decisions which backends there are on every
// change of its pools (knownBackends), and closes a backend's connections
// at a drain's deadline. The cluster member takes the other members'
// decisions straight to them, without the server.

// newDecisions makes the decisions' keeper, its file beside the snapshot.
func (s *Server) newDecisions(snapshot string) *operator.Decisions {
	return operator.New(operator.Options{Path: persist.FilesOf(snapshot).Operator, Log: s.log, Failures: &s.SnapshotFailures,
		OnChange: func(d operator.Decision, why string) {
			what := "set " + d.State.String()
			if d.Weight >= 0 {
				what += fmt.Sprintf(", weight %d", d.Weight)
			}
			s.opts.Events.Publish(event.Event{Kind: event.Decision, Pool: d.Pool, Backend: d.Backend, What: what + " (" + why + ")"})
		},
		OnDeadline: func(_ string, b *pool.Backend) {
			s.closeBackend(b, proxy.EndCutDrainDeadline, "drain deadline reached")
		}})
}

// knownBackends are the backends of the pools as published, with the
// file's weights, for the decisions.
func (s *Server) knownBackends() []operator.Backend {
	var out []operator.Backend
	cfg := s.current.Load()
	for _, p := range s.Pools() {
		for _, b := range p.Pool.Backends() {
			w := -1
			if pc := cfg.Pools[p.Name]; pc != nil && pc.Backends[b.Name] != nil {
				w = pc.Backends[b.Name].Weight
			}
			out = append(out, operator.Backend{Pool: p.Name, Backend: b, FileWeight: w})
		}
	}
	return out
}

// SetState sets a backend's administrative state, at every cluster
// member and across restarts (operator.Decisions.SetState).
func (s *Server) SetState(poolName, backend string, st pool.AdminState, deadline time.Duration) (*pool.Backend, error) {
	return s.share(s.decisions.SetState(poolName, backend, st, deadline))
}

// SetWeight sets a backend's weight until the file's weight for it
// changes; every cluster member takes it.
func (s *Server) SetWeight(poolName, backend string, w int) (*pool.Backend, error) {
	return s.share(s.decisions.SetWeight(poolName, backend, w))
}

// share tells the other members of a decision this member made.
func (s *Server) share(d operator.Decision, b *pool.Backend, err error) (*pool.Backend, error) {
	if err != nil {
		return nil, err
	}
	if m := s.cluster.Load(); m != nil {
		m.ShareOperators([]operator.Decision{d})
		m.PublishDecisions()
	}
	return b, nil
}

// Agreement says which other cluster members hold the decision about a
// backend this member holds, in words for the API: "" without a cluster
// or a decision.
func (s *Server) Agreement(poolName, backend string) string {
	m := s.cluster.Load()
	if m != nil {
		if lacking := m.Lacking(poolName, backend); len(lacking) > 0 {
			return strings.Join(lacking, ", ") + " lack it: no new clients until every member has it"
		}
	}
	d, ok := s.decisions.Held(poolName, backend)
	if m == nil || !ok {
		return ""
	}
	a := m.Agree(d)
	var parts []string
	if len(a.NotYet) > 0 {
		parts = append(parts, strings.Join(a.NotYet, ", ")+" not heard yet")
	}
	if len(a.Newer) > 0 {
		parts = append(parts, strings.Join(a.Newer, ", ")+" newer")
	}
	if len(parts) == 0 {
		return "agreed"
	}
	return strings.Join(parts, "; ")
}

// closeBackend closes every connection to b, on every listener; end is
// how their closing lines and metrics will say they ended.
func (s *Server) closeBackend(b *pool.Backend, end proxy.Termination, why string) int {
	s.mu.Lock()
	ls := slices.Clone(s.retired)
	for _, lr := range s.listeners {
		ls = append(ls, lr.l)
	}
	s.mu.Unlock()
	n := 0
	for _, l := range ls {
		n += l.CloseBackend(b, end)
	}
	if n > 0 {
		s.log.Warn("closed connections to backend", "backend", b.Name, "connections", n, "why", why)
	}
	return n
}

// backendNamed finds a backend by pool and name in the published pools:
// it takes no lock.
func (s *Server) backendNamed(poolName, backend string) (*pool.Backend, error) {
	v, ok := s.view(poolName)
	if !ok {
		return nil, fmt.Errorf("no pool %q", poolName)
	}
	b := v.Pool.Backend(backend)
	if b == nil {
		return nil, fmt.Errorf("pool %s has no backend %q", poolName, backend)
	}
	return b, nil
}
