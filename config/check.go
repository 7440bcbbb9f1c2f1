package config

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// checker collects the mistakes of one file, and what the checks read
// from the files the config names. Checking reads the config and never
// changes it: Load keeps what was read (keep) once every check passed.
type checker struct {
	file  string
	lines map[string]int
	errs  []error
	read  filesRead
}

// filesRead is what the checks read and parsed on the way: the token,
// the certificate, the gossip keys and the cluster's addresses. Read
// once, so run uses the very copy that was checked: a file that cannot
// be read later cannot leave the API without its token.
type filesRead struct {
	token           string
	cert            *tls.Certificate
	listen          listenAddrs // each listener's address and ports
	keys            [][]byte
	bind, advertise netip.AddrPort
}

// keep stores what the checks read into the config, for the runtime.
func (c *Config) keep(r filesRead) {
	c.Admin.Token, c.Admin.Certificate = r.token, r.cert
	c.Cluster.Keys, c.Cluster.BindAddr, c.Cluster.AdvertiseAddr = r.keys, r.bind, r.advertise
	for _, b := range r.listen {
		if l := c.Listeners[b.name]; l != nil {
			l.addr, l.ports = b.addr, b.ports
		}
	}
}

// errAt records a mistake at key path; the line is that of the key, or of
// the nearest table above it that the file names.
func (v *checker) errAt(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; {
		if l, ok := v.lines[p]; ok {
			line = l
			break
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) check(v *checker) {
	c.Global.check(v)
	c.Admin.check(v)
	c.Cluster.check(v)
	if len(c.Listeners) == 0 {
		v.errAt("listener", "no listener defined: add a [listener.NAME] table with listen and pool")
	}
	if len(c.Pools) == 0 {
		v.errAt("pool", "no pool defined: add a [pool.NAME] table with at least one [pool.NAME.backend.NAME]")
	}
	var addrs listenAddrs
	for _, name := range slices.Sorted(maps.Keys(c.Listeners)) {
		c.Listeners[name].check(v, &addrs, c.Pools)
	}
	v.read.listen = addrs
	for _, name := range slices.Sorted(maps.Keys(c.Pools)) {
		c.Pools[name].check(v, "pool."+name)
	}
	c.checkOwnSockets(v)
	c.checkRangeHealth(v)
	c.checkNames(v)
}

func (g *Global) check(v *checker) {
	v.within("global.drain_timeout", g.DrainTimeout, 0, 24*time.Hour)
	v.within("global.stop_grace", g.StopGrace, 0, 10*time.Minute)
	if g.SnapshotFile != "" {
		v.within("global.snapshot_interval", g.SnapshotInterval, time.Second, 24*time.Hour)
		v.within("global.journal_interval", g.JournalInterval, 10*time.Millisecond, time.Minute)
	}
}

// within checks that a duration is from lo to hi; lo 0 means 0 is
// allowed (off). The bounds are what the kernel takes (a keepalive idle
// time over 32767s fails setsockopt) and what is sane (a health check
// every nanosecond, a snapshot fsynced a thousand times a second).
func (v *checker) within(path string, d Duration, lo, hi time.Duration) {
	switch {
	case lo > 0 && d.Duration < lo:
		v.errAt(path, "%s is too short: must be at least %s", d, lo)
	case d.Duration > hi:
		v.errAt(path, "%s is too long: must be at most %s", d, hi)
	}
}

// maxKeepalive is Linux's limit for TCP_KEEPIDLE and TCP_KEEPINTVL.
const maxKeepalive = 32767 * time.Second

func (a *Admin) check(v *checker) {
	if a.Listen == "off" {
		return
	}
	ap, err := ParseListen(a.Listen)
	switch {
	case err != nil:
		v.errAt("admin.listen", "%v", err)
	case !ap.Addr().IsLoopback() && a.TokenFile == "":
		v.errAt("admin.listen", "%s is reachable from other machines: set admin.token_file to a file holding a bearer token, or listen on 127.0.0.1", a.Listen)
	}
	if a.TokenFile != "" {
		var err error
		if v.read.token, err = ReadToken(a.TokenFile); err != nil {
			v.errAt("admin.token_file", "cannot read the token: %v", err)
		} else if len(v.read.token) < 16 {
			v.errAt("admin.token_file", "the token in %s is shorter than 16 characters", a.TokenFile)
		}
	}
	a.checkTLS(v, ap)
	for i, h := range a.Hosts {
		if h == "" || strings.ContainsAny(h, ":/[] ") {
			v.errAt("admin.hosts", "entry %d (%q) is not a host name: give names only, such as \"lb1.example.com\" (IP addresses are always accepted)", i+1, h)
		}
	}
}

// listenAddrs are the addresses and ports the listeners checked so far
// bind, in the order checked.
type listenAddrs []boundAddr

type boundAddr struct {
	name  string
	addr  netip.Addr
	ports Ports
}

// A listener of up to SmallRange ports binds a socket each by default
// (range_mode = "auto"): no BPF needed and a handful of descriptors. Up
// to MaxPerPort it may bind a socket each (range_mode = "per-port", or
// "auto" where sk_lookup is not allowed); beyond, the descriptors and
// accept goroutines cost more than one steered socket.
const (
	SmallRange = 16
	MaxPerPort = 1024
)

func (l *Listener) check(v *checker, seen *listenAddrs, pools map[string]*Pool) {
	at := "listener." + l.Name
	if l.Listen == "" {
		v.errAt(at+".listen", "missing: give the address to listen on, such as \"0.0.0.0:135\" or \"0.0.0.0:6005-59530\"")
	} else if a, ps, err := ParseListenPorts(l.Listen); err != nil {
		v.errAt(at+".listen", "%v", err)
	} else {
		seen.add(v, at, l, a, ps)
		if l.InspectDCERPC && ps.Count() > 1 {
			v.errAt(at+".inspect_dcerpc", "follows the endpoint mapper on a listener of its one port (135), not of %d ports: give 135 a listener of its own, with no range (docs/config.md, \"Following the endpoint mapper\")", ps.Count())
		}
		if l.RangeMode == RangePerPort && ps.Count() > MaxPerPort {
			v.errAt(at+".range_mode", "per-port binds a socket for each of the %d ports, at most %d: use \"sk-lookup\" (one socket; docs/deploy.md, \"Port ranges\")", ps.Count(), MaxPerPort)
		}
	}
	if l.BackendPort < 0 || l.BackendPort > 65535 {
		v.errAt(at+".backend_port", "must be a port from 1 to 65535, not %d", l.BackendPort)
	}
	l.checkProxy(v, at)
	if l.InspectDCERPC {
		v.within(at+".pinhole_timeout", l.PinholeTimeout, time.Second, 24*time.Hour)
	}
	if l.Pool == "" {
		v.errAt(at+".pool", "missing: name the pool this listener forwards to")
	} else if _, ok := pools[l.Pool]; !ok {
		v.errAt(at+".pool", "pool %q is not defined (defined: %s)", l.Pool, strings.Join(slices.Sorted(maps.Keys(pools)), ", "))
	}
}

func (l *Listener) checkProxy(v *checker, at string) {
	for i, s := range l.ProxyTrusted {
		if _, err := parseNet(s); err != nil {
			v.errAt(at+".proxy_trusted", "entry %d: %v", i+1, err)
		}
	}
	if l.ProxyProtocol && len(l.ProxyTrusted) == 0 {
		v.errAt(at+".proxy_trusted", "required with proxy_protocol: list the balancers allowed to say who the client is, such as [\"10.1.0.5\"]")
	}
	v.within(at+".proxy_header_timeout", l.ProxyHeaderTimeout, 10*time.Millisecond, time.Minute)
}

// add records a listener's address and ports and reports the clashes
// with those seen before, once per pair. A wildcard address takes its
// ports on every address, so it clashes with any other listener that
// shares a port.
func (s *listenAddrs) add(v *checker, at string, l *Listener, a netip.Addr, ps Ports) {
	if ps[0].First == 0 {
		if l.BackendPort == 0 {
			v.errAt(at+".backend_port", "required when the listen port is 0")
		}
		return
	}
	if l.BackendPort != 0 && ps.Count() > 1 {
		v.errAt(at+".backend_port", "a listener of several ports (%s) forwards each connection to the port its client dialled: remove backend_port", ps)
	}
	for _, o := range *s {
		port, shared := ps.Overlap(o.ports)
		switch {
		case !shared:
		case o.addr == a && ps.Count() == 1 && o.ports.Count() == 1:
			v.errAt(at+".listen", "%s is also the address of listener %q", l.Listen, o.name)
		case o.addr == a:
			v.errAt(at+".listen", "%s shares port %d with listener %q (%s)", l.Listen, port, o.name, hostPort(o.addr, port))
		case o.addr.IsUnspecified() || a.IsUnspecified():
			v.errAt(at+".listen", "%s overlaps %s of listener %q: a wildcard address takes port %d on every address",
				l.Listen, hostPort(o.addr, port), o.name, port)
		}
	}
	*s = append(*s, boundAddr{l.Name, a, ps})
}

func (p *Pool) check(v *checker, at string) {
	v.within(at+".connect_timeout", p.ConnectTimeout, time.Millisecond, 5*time.Minute)
	if p.IdleTimeout.Duration != 0 {
		v.within(at+".idle_timeout", p.IdleTimeout, time.Second, 30*24*time.Hour)
	}
	v.within(at+".half_close_timeout", p.HalfCloseTimeout, 0, 24*time.Hour)
	v.within(at+".slow_start", p.SlowStart, 0, 24*time.Hour)
	if p.ConnectRetries < 0 || p.ConnectRetries > 16 {
		v.errAt(at+".connect_retries", "must be from 0 to 16, not %d", p.ConnectRetries)
	}
	if p.Keepalive.Duration != 0 {
		v.within(at+".keepalive", p.Keepalive, time.Second, maxKeepalive)
	}
	if p.PassiveFall < 0 || p.PassiveFall > 100 {
		v.errAt(at+".passive_fall", "must be from 0 (off) to 100, not %d", p.PassiveFall)
	}
	p.Affinity.check(v, at+".affinity")
	p.Limits.check(v, at+".limits")
	p.Outlier.check(v, at+".outlier")
	if p.Outlier.Enabled && p.DCERPC == RPCOff {
		v.errAt(at+".outlier", "learns from the pool's DCE/RPC traffic, which is not read: set dcerpc = \"calls\" (faults and binds) or \"binds\" (binds only) in [%s]", at)
	}
	v.timing(at+".health", p.Health.Interval, p.Health.Timeout, p.Health.Rise, p.Health.Fall)
	for _, name := range slices.Sorted(maps.Keys(p.Checks)) {
		p.Checks[name].check(v, at+".check."+name)
	}
	if len(p.Backends) == 0 {
		v.errAt(at+".backend", "no backend: add at least one [%s.backend.NAME] with an address", at)
	}
	addrs := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(p.Backends)) {
		p.Backends[name].check(v, at+".backend."+name, addrs)
	}
}

func (a *Affinity) check(v *checker, at string) {
	if a.IPv4Prefix < 1 || a.IPv4Prefix > 32 {
		v.errAt(at+".ipv4_prefix", "must be from 1 to 32, not %d", a.IPv4Prefix)
	}
	if a.IPv6Prefix < 1 || a.IPv6Prefix > 128 {
		v.errAt(at+".ipv6_prefix", "must be from 1 to 128, not %d", a.IPv6Prefix)
	}
	v.within(at+".ttl", a.TTL, time.Second, 365*24*time.Hour)
	if a.NewPinsPerSecond < 0 || a.NewPinsPerSecond > 1e7 {
		v.errAt(at+".new_pins_per_second", "must be from 0 (off) to 10000000, not %g", a.NewPinsPerSecond)
	}
	if a.MaxEntries < 1 || a.MaxEntries > 100_000_000 {
		v.errAt(at+".max_entries", "must be from 1 to 100000000, not %d", a.MaxEntries)
	}
	if a.MaxPinsPerPrefix < 0 || a.MaxPinsPerPrefix > 100_000_000 {
		v.errAt(at+".max_pins_per_prefix", "must be from 0 (max_entries / 16) to 100000000, not %d", a.MaxPinsPerPrefix)
	}
}

func (l *Limits) check(v *checker, at string) {
	if l.IPv4Prefix < 1 || l.IPv4Prefix > 32 {
		v.errAt(at+".ipv4_prefix", "must be from 1 to 32, not %d", l.IPv4Prefix)
	}
	if l.IPv6Prefix < 1 || l.IPv6Prefix > 128 {
		v.errAt(at+".ipv6_prefix", "must be from 1 to 128, not %d", l.IPv6Prefix)
	}
	if l.MaxConnsPerClient < 0 || l.MaxConnsPerClient > 1_000_000 {
		v.errAt(at+".max_conns_per_client", "must be from 0 (off) to 1000000, not %d", l.MaxConnsPerClient)
	}
	if l.ConnRatePerClient < 0 || l.ConnRatePerClient > 1e6 {
		v.errAt(at+".conn_rate_per_client", "must be from 0 (off) to 1000000 connections per second, not %g", l.ConnRatePerClient)
	}
	if l.ConnBurstPerClient < 0 || l.ConnBurstPerClient > 1_000_000 {
		v.errAt(at+".conn_burst_per_client", "must be from 0 (the rate) to 1000000, not %d", l.ConnBurstPerClient)
	}
}

// check reports a backend's mistakes; addrs holds the addresses of the
// pool's backends checked so far.
func (b *Backend) check(v *checker, at string, addrs map[string]string) {
	switch {
	case b.Address == "":
		v.errAt(at+".address", "missing: give the backend's IP address or host name")
	case strings.ContainsAny(b.Address, "[]"):
		v.errAt(at+".address", "%q: give an IPv6 address without brackets, such as \"2001:db8::11\"", b.Address)
	case strings.ContainsAny(b.Address, "/ "):
		v.errAt(at+".address", "%q is not a host", b.Address)
	default:
		if _, _, err := net.SplitHostPort(b.Address); err == nil {
			v.errAt(at+".address", "%q has a port: give the host only; the port is the listener's (or its backend_port)", b.Address)
		} else if other, dup := addrs[b.Address]; dup {
			v.errAt(at+".address", "%s is also the address of backend %q", b.Address, other)
		}
		addrs[b.Address] = b.Name
	}
	if b.Weight < 0 || b.Weight > MaxWeight {
		v.errAt(at+".weight", "must be from 0 to %d, not %d", MaxWeight, b.Weight)
	}
	if b.MaxConns < 0 {
		v.errAt(at+".max_conns", "must be 0 (no limit) or more, not %d", b.MaxConns)
	}
}

// timing checks a health check's interval, timeout, rise and fall, which
// [pool.NAME.health] and each [pool.NAME.check.NAME] have.
func (v *checker) timing(at string, interval, timeout Duration, rise, fall int) {
	v.within(at+".interval", interval, 10*time.Millisecond, time.Hour)
	v.within(at+".timeout", timeout, time.Millisecond, time.Minute)
	if rise < 1 {
		v.errAt(at+".rise", "must be at least 1, not %d", rise)
	}
	if fall < 1 {
		v.errAt(at+".fall", "must be at least 1, not %d", fall)
	}
}

func (c *Check) check(v *checker, at string) {
	if c.Port < 0 || c.Port > 65535 {
		v.errAt(at+".port", "must be a port from 1 to 65535, or 0 for every backend port, not %d", c.Port)
	}
	v.timing(at, c.Interval, c.Timeout, c.Rise, c.Fall)
	for key, src := range map[string]string{"expect_regex": c.ExpectRegex, "body": c.Body} {
		if _, err := regexp.Compile(src); err != nil {
			v.errAt(at+"."+key, "bad regular expression: %v", err)
		}
	}
	if c.Type == RPCCheck {
		if _, err := rpcInterface(c.Interface, c.InterfaceVersion); err != nil {
			v.errAt(at+".interface", "%v", err)
		}
	} else if c.Interface != "" || c.InterfaceVersion != "" {
		v.errAt(at+".interface", "only an rpc check binds an interface: set type = \"rpc\" or remove it")
	}
	if c.Send != "" && len(c.SendHex) > 0 {
		v.errAt(at+".send_hex", "give send or send_hex, not both")
	}
	if n := btoi(c.Expect != "") + btoi(len(c.ExpectHex) > 0) + btoi(c.ExpectRegex != ""); n > 1 {
		v.errAt(at+".expect", "give one of expect, expect_hex and expect_regex")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkTLS loads the admin listener's certificate, and asks for one, or
// for the token, where the API is reachable from other machines.
func (a *Admin) checkTLS(v *checker, ap netip.AddrPort) {
	if a.TokenForReads && a.TokenFile == "" {
		v.errAt("admin.token_for_reads", "needs admin.token_file: the token reads would need")
	}
	switch {
	case (a.TLSCertFile == "") != (a.TLSKeyFile == ""):
		v.errAt("admin.tls_cert_file", "give both tls_cert_file and tls_key_file, or neither")
	case a.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(a.TLSCertFile, a.TLSKeyFile)
		if err != nil {
			v.errAt("admin.tls_cert_file", "cannot load the certificate and key: %v", err)
			return
		}
		v.read.cert = &cert
	}
}
