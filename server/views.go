//go:build linux

package server

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/proxy"
)

// PoolView is a pool as the admin API and metrics see it: its pins, as
// the store and the cluster see them too, and its backends.
type PoolView struct {
	affinity.Pins
	Pool *pool.Pool
}

// Pools returns the current pools in name order. It takes no lock: the
// server publishes the list whole on every change of its pools
// (publishPools), so the cluster's and the store's readers, which run
// on memberlist's and the journal's goroutines, never wait on a reload
// or an upgrade that holds s.mu (a failed upgrade of a cluster member
// deadlocked on it: Resume held s.mu and the new member's first message
// asked for the pools). The slice is shared: do not modify it.
func (s *Server) Pools() []PoolView {
	if p := s.published.Load(); p != nil {
		return *p
	}
	return nil
}

// publishPools publishes the pools as they are now, with s.mu held: the
// views for the API, and their pins for the store and the cluster.
func (s *Server) publishPools() {
	out := make([]PoolView, 0, len(s.pools))
	pins := make([]affinity.Pins, 0, len(s.pools))
	for _, name := range slices.Sorted(maps.Keys(s.pools)) {
		p := s.pools[name]
		var names []string
		for _, b := range p.pool.Backends() {
			names = append(names, b.Name)
		}
		v := PoolView{Pins: affinity.Pins{Name: name, Table: p.table, Keyer: p.keyer, Backends: names}, Pool: p.pool}
		out = append(out, v)
		pins = append(pins, v.Pins)
	}
	s.pins.Publish(pins)
	s.published.Store(&out)
}

// Active returns the number of open client connections.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, lr := range s.listeners {
		n += lr.l.Active()
	}
	for _, l := range s.retired {
		n += l.Active()
	}
	return n
}

// ListenerView is a listener as the admin API sees it.
type ListenerView struct {
	Name     string
	Addr     netip.AddrPort // the first port's
	Ports    string         // every port: "135" or "135,6005-59530"
	TakenBy  string         // socket, per-port or sk-lookup
	Pool     string
	Active   int    // open connections
	Accepted uint64 // connections accepted since it opened
}

// Listeners returns the current listeners in name order.
func (s *Server) Listeners() []ListenerView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ListenerView, 0, len(s.listeners))
	for _, lr := range s.listeners {
		ports, how := lr.l.Ports()
		out = append(out, ListenerView{Name: lr.cfg.Name, Addr: lr.l.Addr(), Ports: ports.String(), TakenBy: how,
			Pool: lr.cfg.Pool, Active: lr.l.Active(), Accepted: lr.l.Accepted()})
	}
	slices.SortFunc(out, func(a, b ListenerView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Pinholes returns, for each listener that follows the endpoint mapper
// (inspect_dcerpc), its learned ports' counts, by listener name.
func (s *Server) Pinholes() map[string]proxy.PinholeStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]proxy.PinholeStats{}
	for _, lr := range s.listeners {
		if lr.cfg.InspectDCERPC {
			out[lr.cfg.Name] = lr.l.Pinholes().Stats()
		}
	}
	return out
}

// Addrs returns each listener's bound address by name.
func (s *Server) Addrs() map[string]netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]netip.AddrPort{}
	for _, lr := range s.listeners {
		m[lr.cfg.Name] = lr.l.Addr()
	}
	return m
}

// Pool returns the named pool, or nil; from the published pools, without
// a lock.
func (s *Server) Pool(name string) *pool.Pool {
	if v, ok := s.view(name); ok {
		return v.Pool
	}
	return nil
}

// Table returns the named pool's affinity table, or nil.
func (s *Server) Table(name string) *affinity.Table {
	if v, ok := s.view(name); ok {
		return v.Table
	}
	return nil
}

func (s *Server) view(name string) (PoolView, bool) {
	ps := s.Pools()
	i := slices.IndexFunc(ps, func(p PoolView) bool { return p.Name == name })
	if i < 0 {
		return PoolView{}, false
	}
	return ps[i], true
}

// Config returns the config in force.
func (s *Server) Config() *config.Config { return s.current.Load() }

// Listed returns the backends to show: the pool's, then those a reload
// removed while they still have open connections or pins here.
func (v PoolView) Listed() []*pool.Backend {
	var pins map[string]int
	if v.Table != nil {
		pins = v.Table.Counts()
	}
	return v.Pool.Listed(func(b *pool.Backend) bool { return b.Active() > 0 || pins[b.Name] > 0 })
}
