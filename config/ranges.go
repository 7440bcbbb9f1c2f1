package config

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// FixedPorts are the backend ports a listener forwards that its config
// names one by one: a single-port listener's target, and each port a
// list names alone (135 of "135,6005-59530"). Health checks probe these,
// and a failed connect there counts against the backend.
func (l *Listener) FixedPorts() []int {
	if !l.Multi() {
		return []int{l.TargetPort()}
	}
	var out []int
	for _, r := range l.Ports() {
		if r.First == r.Last {
			out = append(out, int(r.First))
		}
	}
	return out
}

// ClientPorts are the ports of a listener's ranges (6005-59530 of
// "135,6005-59530"), where the client chooses the backend port: any
// client can dial one no CAS listens on, so a failed connect there says
// nothing about the backend and must not count against it.
func (l *Listener) ClientPorts() Ports {
	if !l.Multi() {
		return nil
	}
	var out Ports
	for _, r := range l.Ports() {
		if r.First != r.Last {
			out = append(out, r)
		}
	}
	return out
}

// checkRangeHealth refuses a pool that forwards port ranges but has no
// active check able to take a dead CAS down: connects to a range do not
// feed the passive check (ClientPorts), so without one a CAS that died
// would keep its clients for good.
func (c *Config) checkRangeHealth(v *checker) {
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		p := c.Pools[name]
		var ranged []string
		fixed := false
		for _, ln := range slices.Sorted(maps.Keys(c.Listeners)) {
			l := c.Listeners[ln]
			if l.Pool != name || l.Listen == "" {
				continue
			}
			if rs := l.ClientPorts(); len(rs) > 0 {
				ranged = append(ranged, fmt.Sprintf("%s (%s)", ln, rs))
			}
			fixed = fixed || len(l.FixedPorts()) > 0
		}
		if len(ranged) == 0 {
			continue
		}
		checks := p.ActiveChecks()
		probes := slices.ContainsFunc(checks, func(ch *Check) bool { return ch.Type == RPCCheck || ch.Port != 0 })
		switch {
		case len(checks) == 0:
			v.errAt("pool."+name+".health", "pool %s forwards port ranges (listener %s), where a failed connect is the client's choice of port and never takes a CAS down: "+
				"it needs an active check; enable [pool.%s.health] or add an rpc check (docs/config.md, \"Exchange RPC checks\")", name, strings.Join(ranged, ", "), name)
		case !probes && !fixed:
			v.errAt("pool."+name+".health", "pool %s forwards port ranges only (listener %s): its checks probe the pool's fixed ports and it has none, so nothing would take a dead CAS down; "+
				"add an rpc check, give the check a port, or list the endpoint mapper's port in the listener (\"VIP:135,6005-59530\")", name, strings.Join(ranged, ", "))
		}
	}
}

// portSet is an address and the ports a socket of stickylb's takes
// there: a listener's, the admin API's or the cluster's.
type portSet struct {
	key   string // the config key that sets it, such as "listener.rpc.listen"
	addr  netip.Addr
	ports Ports
}

// overlaps reports a port both sets take on an address both reach: the
// same address, or either one the wildcard of a family that reaches the
// other ("::" reaches IPv4 too, as a dual-stack socket does).
func (a portSet) overlaps(b portSet) (uint16, bool) {
	if !addrsMeet(a.addr, b.addr) {
		return 0, false
	}
	return a.ports.Overlap(b.ports)
}

func addrsMeet(a, b netip.Addr) bool {
	a, b = a.Unmap(), b.Unmap()
	switch {
	case a == b:
		return true
	case a.IsUnspecified() && (a.Is6() || b.Is4()):
		return true
	case b.IsUnspecified() && (b.Is6() || a.Is4()):
		return true
	}
	return false
}

// ownSockets are the admin API's and the cluster's addresses, the
// sockets of stickylb's own that a listener's ports must leave alone.
func (c *Config) ownSockets() []portSet {
	var out []portSet
	if c.Admin.Listen != "off" {
		if ap, err := ParseListen(c.Admin.Listen); err == nil && ap.Port() != 0 {
			out = append(out, portSet{"admin.listen", ap.Addr(), Ports{{ap.Port(), ap.Port()}}})
		}
	}
	if c.Cluster.Enabled() {
		if ap, err := ParseListen(c.Cluster.Bind); err == nil && ap.Port() != 0 {
			out = append(out, portSet{"cluster.bind", ap.Addr(), Ports{{ap.Port(), ap.Port()}}})
		}
	}
	return out
}

// ReservedPorts are the ports of stickylb's own sockets (admin API,
// cluster) that listener l's ports include on an address l reaches. A
// listener steered by sk_lookup leaves them out of its range, so that
// the admin API and gossip are never forwarded to a CAS.
func (c *Config) ReservedPorts(l *Listener) []uint16 {
	a, ps := l.ListenAddr()
	mine := portSet{addr: a, ports: ps}
	var out []uint16
	for _, o := range c.ownSockets() {
		if port, ok := mine.overlaps(o); ok {
			out = append(out, port)
		}
	}
	return out
}

// checkOwnSockets compares each listener's address and ports, as sets,
// with the admin API's and the cluster's. A listener that binds a socket
// per port would fail to start on such a port; one steered by sk_lookup
// leaves the port out of its range (ReservedPorts), and check says so.
func (c *Config) checkOwnSockets(v *checker) {
	own := c.ownSockets()
	for _, name := range slices.Sorted(maps.Keys(c.Listeners)) {
		l := c.Listeners[name]
		a, ps, err := ParseListenPorts(l.Listen)
		if err != nil || ps[0].First == 0 {
			continue
		}
		mine := portSet{"listener." + name + ".listen", a, ps}
		for _, o := range own {
			port, ok := mine.overlaps(o)
			if !ok || (ps.Count() > 1 && l.RangeMode.Steers(ps)) {
				continue
			}
			v.errAt(mine.key, "%s takes port %d on the address of %s (%s): both cannot bind it; "+
				"listen on the array's address (the VIP) rather than the wildcard, or move %s", l.Listen, port, o.key, hostPort(o.addr, port), o.key)
		}
	}
}

// warnReserved says which of stickylb's own ports a steered range leaves
// out, naming both keys: legal, but the wildcard then serves the range
// on every address of the host, the admin API's and the cluster's among
// them.
func (c *Config) warnReserved(v *checker, name string) {
	l := c.Listeners[name]
	ps := l.Ports()
	if ps.Count() <= 1 || !l.RangeMode.Steers(ps) {
		return
	}
	a, _ := l.ListenAddr()
	for _, o := range c.ownSockets() {
		if port, ok := (portSet{addr: a, ports: ps}).overlaps(o); ok {
			v.errAt("listener."+name+".listen", "%s takes port %d, where %s listens (%s): the range leaves port %d out on every address, "+
				"so %s is never forwarded to a CAS; listen on the array's address (the VIP) rather than the wildcard", l.Listen, port, o.key, hostPort(o.addr, port), port, o.key)
		}
	}
}
