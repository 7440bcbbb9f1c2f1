package config

import (
	"maps"
	"net/netip"
	"slices"
	"time"
)

// windowsKeepalive is when Windows sends its first TCP keepalive on an
// idle connection (KeepAliveTime). A timeout below it cuts idle MAPI
// connections (Outlook events 25/26, KB2535656).
const windowsKeepalive = 2 * time.Hour

// Warnings lists what is legal but likely wrong for a balancer in front
// of a CAS array, each with file, line and key. `stickylb check` prints
// them and still succeeds.
func (c *Config) Warnings() []error {
	v := &checker{file: c.File, lines: c.lines}
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		c.Pools[name].warn(v, "pool."+name)
		if c.Cluster.Enabled() && c.Pools[name].Balance != Hash {
			v.errAt("pool."+name+".balance", "%s places a new client by this member's own counters, so the first connections of one client at two members can go to two backends: "+
				"with [cluster], use balance = \"hash\", which every member computes alike", c.Pools[name].Balance)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Listeners)) {
		l := c.Listeners[name]
		p := c.Pools[l.Pool]
		c.warnReserved(v, name)
		if p == nil || len(l.ClientPorts()) == 0 || slices.ContainsFunc(p.ActiveChecks(), func(c *Check) bool { return c.Type != TCPCheck }) {
			continue
		}
		v.errAt("listener."+name+".listen", "pool %s has only TCP checks, which probe fixed ports and none of this listener's range %s: "+
			"a CAS whose RPC services stopped passes them; add an rpc check for each interface the range serves (docs/config.md, \"Exchange RPC checks\")", l.Pool, l.ClientPorts())
	}
	c.warnTransparentFamilies(v)
	if ap, err := ParseListen(c.Admin.Listen); err == nil && !ap.Addr().IsLoopback() && c.Admin.Certificate == nil {
		v.errAt("admin.listen", "the admin API is reachable from other machines over plain HTTP: its token crosses the network in clear text; "+
			"set admin.tls_cert_file and admin.tls_key_file")
	}
	if c.Cluster.Enabled() && len(c.Cluster.Peers) == 0 {
		v.errAt("cluster.peers", "no peers: this member waits for others to join it and shares pins with nobody until they do")
	}
	return append(v.errs, c.SecretWarnings()...)
}

// At is a finding about key in c's file, with the line that sets it: for
// checks made outside this package, such as what this host can resolve.
func (c *Config) At(key, format string, args ...any) error {
	v := &checker{file: c.File, lines: c.lines}
	v.errAt(key, format, args...)
	return v.errs[0]
}

func (p *Pool) warn(v *checker, at string) {
	taking, backups := 0, 0
	for _, b := range p.Backends {
		switch {
		case b.Weight > 0 && b.Backup:
			backups++
		case b.Weight > 0:
			taking++
		}
	}
	switch {
	case len(p.Backends) == 0:
		// an error, reported by check
	case taking == 0 && backups > 0:
		v.errAt(at+".backend", "every backend is a backup: they share new clients as if none were")
	case taking == 0:
		v.errAt(at+".backend", "every backend has weight 0: no new client can be placed")
	case taking == 1 && backups == 0:
		v.errAt(at+".backend", "one backend takes new clients: when it fails, its clients have nowhere to go")
	}
	for _, name := range slices.Sorted(maps.Keys(p.Backends)) {
		if a, err := netip.ParseAddr(p.Backends[name].Address); err == nil && isDocumentation(a) {
			v.errAt(at+".backend."+name+".address", "%s is a documentation address (RFC 5737, RFC 3849), a placeholder: put this CAS's address here", a)
		}
	}
	if checks := p.ActiveChecks(); len(checks) > 0 && !slices.ContainsFunc(checks, func(c *Check) bool { return c.Type != TCPCheck }) {
		v.errAt(at+".health", "only TCP checks: a CAS that accepts connections but never answers (hung) passes them and its clients hang; "+
			"add an rpc check (docs/config.md, \"Exchange RPC checks\")")
	}
	if ttl := p.Affinity.TTL.Duration; ttl < windowsKeepalive {
		v.errAt(at+".affinity.ttl", "%s is below Windows' 2h keepalive: an idle MAPI session can lose its pin while its client still holds it", p.Affinity.TTL)
	}
	if p.SendProxy != ProxyOff {
		v.errAt(at+".send_proxy", "backends must expect a PROXY header on every connection: Exchange does not, and would refuse them all")
	}
	if it := p.IdleTimeout.Duration; it > 0 && it < windowsKeepalive {
		v.errAt(at+".idle_timeout", "%s is below Windows' 2h keepalive: idle MAPI connections will be cut (Outlook events 25/26)", p.IdleTimeout)
	}
}

// documentation are the address ranges set aside for examples, which the
// packaged lb.toml uses as placeholders.
var documentation = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}

func isDocumentation(a netip.Addr) bool {
	return slices.ContainsFunc(documentation, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) })
}

// warnTransparentFamilies names each listener of a transparent pool that
// can take clients of an address family none of the pool's backends has:
// a client's address cannot be the source of a connection to a backend
// of the other family, so those clients are refused (as a local error,
// never the backend's).
func (c *Config) warnTransparentFamilies(v *checker) {
	for _, name := range slices.Sorted(maps.Keys(c.Listeners)) {
		l := c.Listeners[name]
		p := c.Pools[l.Pool]
		if p == nil || !p.Transparent {
			continue
		}
		has := map[bool]bool{} // is IPv4 -> some backend has it
		for _, b := range p.Backends {
			if a, err := netip.ParseAddr(b.Address); err == nil {
				has[a.Unmap().Is4()] = true
			} else {
				return // a host name: its family is known at run time only
			}
		}
		a := l.Addr().Addr()
		takes := map[bool]bool{a.Unmap().Is4(): true}
		if !a.IsValid() || (a.Is6() && a.IsUnspecified()) || l.ProxyProtocol {
			takes = map[bool]bool{true: true, false: true} // dual stack, or whatever a PROXY header says
		}
		for v4, ok := range takes {
			if ok && !has[v4] {
				v.errAt("listener."+name+".listen", "pool %s is transparent and has no %s backend, yet this listener can take %s clients: they will be refused "+
					"(a client's address cannot be the source of a connection to a backend of the other family); listen on %s addresses only, or add backends of that family",
					l.Pool, family(v4), family(v4), family(!v4))
			}
		}
	}
}

func family(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}
