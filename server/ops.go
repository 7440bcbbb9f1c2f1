//go:build linux

package server

import (
	"fmt"
	"slices"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// SetState sets a backend's administrative state, at every cluster
// member and across restarts (operator.go). With a deadline, a drain
// turns into maintenance when it runs out: the backend's remaining
// connections are closed and its clients move at their next connection.
// Any later state change cancels the deadline.
func (s *Server) SetState(poolName, backend string, st pool.AdminState, deadline time.Duration) (*pool.Backend, error) {
	return s.change(poolName, backend, func(op *config.Operator) {
		op.State, op.DrainUntil = st.String(), 0
		if st == pool.Drain && deadline > 0 {
			op.DrainUntil = time.Now().Add(deadline).UnixMilli()
		}
	})
}

// drainTimer bounds one drain. Its address tells it from the timer of a
// later drain of the same backend.
type drainTimer struct{ *time.Timer }

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
