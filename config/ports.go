package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// PortRange is the ports First to Last, both included.
type PortRange struct{ First, Last uint16 }

// Ports is a listener's set of ports: sorted, non-empty ranges that
// neither overlap nor touch.
type Ports []PortRange

// Count is how many ports the set holds.
func (ps Ports) Count() int {
	n := 0
	for _, r := range ps {
		n += int(r.Last-r.First) + 1
	}
	return n
}

// Contains reports whether port p is in the set.
func (ps Ports) Contains(p int) bool {
	for _, r := range ps {
		if p >= int(r.First) && p <= int(r.Last) {
			return true
		}
	}
	return false
}

// Overlap returns a port both sets hold, and whether there is one.
func (ps Ports) Overlap(qs Ports) (uint16, bool) {
	for _, a := range ps {
		for _, b := range qs {
			if lo, hi := max(a.First, b.First), min(a.Last, b.Last); lo <= hi {
				return lo, true
			}
		}
	}
	return 0, false
}

// Each calls f for every port of the set, in order.
func (ps Ports) Each(f func(port uint16)) {
	for _, r := range ps {
		for p := int(r.First); p <= int(r.Last); p++ {
			f(uint16(p))
		}
	}
}

func (ps Ports) String() string {
	parts := make([]string, len(ps))
	for i, r := range ps {
		parts[i] = strconv.Itoa(int(r.First))
		if r.Last != r.First {
			parts[i] += "-" + strconv.Itoa(int(r.Last))
		}
	}
	return strings.Join(parts, ",")
}

// ParseListenPorts reads a listen address whose port part may be a list
// of ports and ranges: "10.0.0.50:135", "10.0.0.50:6005-59530",
// "[::]:135,6005-59530". Port 0 (the kernel picks) stands alone.
func ParseListenPorts(s string) (netip.Addr, Ports, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.Addr{}, nil, fmt.Errorf("%q is not host:port (IPv6 goes in brackets: \"[::]:135\"; a range is \"host:6005-59530\")", s)
	}
	host, spec := s[:i], s[i+1:]
	addr := netip.IPv6Unspecified()
	if host != "" {
		h := host
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		} else if strings.Contains(h, ":") {
			return netip.Addr{}, nil, fmt.Errorf("%q: an IPv6 address goes in brackets: \"[%s]:%s\"", s, h, spec)
		}
		a, err := netip.ParseAddr(h)
		if err != nil {
			return netip.Addr{}, nil, fmt.Errorf("%q: %q is not an IP address", s, h)
		}
		addr = a
	}
	ports, err := parsePorts(spec)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("%q: %w", s, err)
	}
	return addr, ports, nil
}

// parsePorts reads "135", "6005-59530" or "135,6005-59530".
func parsePorts(spec string) (Ports, error) {
	var ps Ports
	for part := range strings.SplitSeq(spec, ",") {
		first, last, isRange := strings.Cut(strings.TrimSpace(part), "-")
		lo, err := parsePort(first, isRange)
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = parsePort(last, true); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, fmt.Errorf("range %q runs backwards: write the lower port first", part)
			}
		}
		ps = append(ps, PortRange{lo, hi})
	}
	if len(ps) > 1 || ps[0].First != ps[0].Last {
		for _, r := range ps {
			if r.First == 0 {
				return nil, fmt.Errorf("port 0 (any free port) cannot be part of a list or range")
			}
		}
	}
	slices.SortFunc(ps, func(a, b PortRange) int { return int(a.First) - int(b.First) })
	for i := 1; i < len(ps); i++ {
		if ps[i].First <= ps[i-1].Last {
			return nil, fmt.Errorf("port %d is listed twice", ps[i].First)
		}
	}
	return ps, nil
}

func parsePort(s string, inRange bool) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	switch {
	case err != nil:
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535 (a range is \"6005-59530\", a list \"135,6005-59530\")", s)
	case inRange && n == 0:
		return 0, fmt.Errorf("a range starts at port 1 or above")
	}
	return uint16(n), nil
}

// ListenAddr is the address and ports of a loaded listener, parsed once
// by Load; parsed here for a Listener that was not loaded.
func (l *Listener) ListenAddr() (netip.Addr, Ports) {
	if l.ports != nil {
		return l.addr, l.ports
	}
	a, ps, err := ParseListenPorts(l.Listen)
	if err != nil {
		return netip.Addr{}, Ports{{}}
	}
	return a, ps
}

// Ports is the set of ports the listener takes connections on.
func (l *Listener) Ports() Ports {
	_, ps := l.ListenAddr()
	return ps
}

// Multi reports whether the listener takes more than one port: it then
// forwards each connection to the port the client dialled.
func (l *Listener) Multi() bool { return l.Ports().Count() > 1 }

// hostPort joins an address and a port the way Listen is written.
func hostPort(a netip.Addr, port uint16) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(int(port)))
}

// Steers says whether a listener of these ports in mode m tries one
// socket steered by sk_lookup first; otherwise it binds a socket per port
// (or, for one port, the one socket).
func (m RangeMode) Steers(ps Ports) bool {
	n := ps.Count()
	return n > 1 && (m == RangeSkLookup || m == RangeAuto && n > SmallRange)
}

// FallsBack says whether a listener that Steers binds a socket per port
// where sk_lookup is not allowed, rather than failing to start.
func (m RangeMode) FallsBack(ps Ports) bool { return m == RangeAuto && ps.Count() <= MaxPerPort }

// Without is the set less the given ports: a range split around each.
func (ps Ports) Without(out []uint16) Ports {
	var res Ports
	for _, r := range ps {
		lo := int(r.First)
		for p := int(r.First); p <= int(r.Last); p++ {
			if !slices.Contains(out, uint16(p)) {
				continue
			}
			if p > lo {
				res = append(res, PortRange{uint16(lo), uint16(p - 1)})
			}
			lo = p + 1
		}
		if lo <= int(r.Last) {
			res = append(res, PortRange{uint16(lo), r.Last})
		}
	}
	return res
}
