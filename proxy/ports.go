//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/steer"
)

// bind opens the listener's sockets: one for a single port; for several,
// one socket that a BPF sk_lookup program steers every port to, or a
// socket per port, as mode says.
func (l *Listener) bind(ctx context.Context, host netip.Addr, mode config.RangeMode, control func(string, string, syscall.RawConn) error) error {
	n := l.ports.Count()
	switch {
	case n == 1:
		l.mode = "socket"
		return l.bindEach(ctx, host, control)
	case !mode.Steers(l.ports):
		l.mode = "per-port"
		return l.bindEach(ctx, host, control)
	}
	err := l.bindSteered(ctx, host, control)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, steer.ErrNotAllowed):
		return err
	case !mode.FallsBack(l.ports):
		return fmt.Errorf("listener %s: %d ports need one socket steered by sk_lookup: %w; "+
			"grant the capabilities (docs/deploy.md, \"Port ranges\") or list at most %d ports with range_mode = \"per-port\"", l.Name, n, err, config.MaxPerPort)
	}
	l.log.Warn("sk_lookup is not allowed here: binding a socket per port instead", "listener", l.Name,
		"ports", l.ports.String(), "count", n, "error", err)
	l.mode = "per-port"
	return l.bindEach(ctx, host, control)
}

// bindEach binds a socket for every port; on failure it closes those it
// bound.
func (l *Listener) bindEach(ctx context.Context, host netip.Addr, control func(string, string, syscall.RawConn) error) error {
	lc := net.ListenConfig{KeepAlive: -1, Control: control}
	var err error
	l.ports.Each(func(port uint16) {
		if err != nil {
			return
		}
		addr := net.JoinHostPort(hostString(host), strconv.Itoa(int(port)))
		if ln := l.inherited.take(addr); ln != nil {
			l.lns = append(l.lns, ln)
			return
		}
		var ln net.Listener
		if ln, err = lc.Listen(ctx, "tcp", addr); err != nil {
			err = listenError(l.Name, addr, err)
			return
		}
		l.lns = append(l.lns, ln.(*net.TCPListener))
	})
	if err != nil {
		for _, ln := range l.lns {
			ln.Close()
		}
		l.lns = nil
	}
	return err
}

// bindSteered binds the first port and steers the others to it, but
// for those another socket listens on (steer.Listening) or l.leave
// names: the program would take their connections from the socket the
// client meant.
func (l *Listener) bindSteered(ctx context.Context, host netip.Addr, control func(string, string, syscall.RawConn) error) error {
	busy, err := othersListening(host, l.ports)
	if err != nil {
		return fmt.Errorf("listener %s: %w", l.Name, err)
	}
	first := netip.AddrPortFrom(host, l.ports[0].First)
	if ln := l.inherited.take(first.String()); ln != nil {
		return l.adoptSteered(ln, host, busy, l.inherited.takeSteering(first.String()))
	}
	ln, err := steer.Listen(ctx, first, control)
	if err != nil {
		return listenError(l.Name, first.String(), err)
	}
	left := slices.DeleteFunc(slices.Concat(busy, l.leave), func(p uint16) bool { return p == first.Port() }) // leave may name it too
	if len(left) > 0 {
		l.log.Warn("port range leaves out ports other sockets listen on (the admin API, the cluster, other services): "+
			"their connections go to those sockets, not to a backend", "listener", l.Name, "ports", left, "count", len(left))
	}
	s, err := steer.Attach(ln, host, l.ports.Without(left))
	if err != nil {
		ln.Close()
		if errors.Is(err, steer.ErrNotAllowed) {
			return err // bind says what to do about it
		}
		return fmt.Errorf("listener %s: %w", l.Name, err)
	}
	l.lns, l.steer, l.mode = []*net.TCPListener{ln}, s, "sk-lookup"
	return nil
}

// adoptSteered serves a range on the socket and steering a process
// handed over, its program swapped for one of this config's ports; a
// socket that came without its steering gets a program of its own.
func (l *Listener) adoptSteered(ln *net.TCPListener, host netip.Addr, busy []uint16, steering []*os.File) error {
	defer closeFiles(steering)
	first := uint16(ln.Addr().(*net.TCPAddr).Port)
	left := slices.DeleteFunc(slices.Concat(busy, l.leave), func(p uint16) bool { return p == first })
	var s *steer.Steer
	var err error
	if steering != nil {
		s, err = steer.Adopt(steering, ln, host, l.ports.Without(left))
	} else {
		s, err = steer.Attach(ln, host, l.ports.Without(left))
	}
	if err != nil {
		ln.Close()
		return fmt.Errorf("listener %s: the handed-over range: %w", l.Name, err)
	}
	l.lns, l.steer, l.mode = []*net.TCPListener{ln}, s, "sk-lookup"
	return nil
}

// hostString writes an address as Listen takes it; the unspecified IPv6
// address as "" so that the socket is dual-stack.
func hostString(a netip.Addr) string {
	if a.Is6() && a.IsUnspecified() {
		return ""
	}
	return a.String()
}

// CheckRange says how listener l will take its ports on this host, as
// this user, when that is not simply: nil for a single port or a socket
// each; an error when it needs sk_lookup and may not use it (start-up
// would fail: ErrStartFails), or falls back to a socket per port.
func CheckRange(l *config.Listener) error {
	ps := l.Ports()
	n := ps.Count()
	if !l.RangeMode.Steers(ps) {
		return nil
	}
	err := steer.Probe()
	switch {
	case err == nil:
		return busyPorts(l, ps)
	case l.RangeMode.FallsBack(ps):
		return fmt.Errorf("listener %s will bind a socket for each of its %d ports: %w", l.Name, n, err)
	}
	return fmt.Errorf("listener %s cannot take its %d ports: %w: %w; grant the capabilities (docs/deploy.md, \"Port ranges\")", l.Name, n, ErrStartFails, err)
}

// ErrStartFails marks a CheckRange error that run would stop at: check
// exits non-zero for it, where the other errors are warnings.
var ErrStartFails = errors.New("start-up will fail")

// busyPorts says which ports of a steered range other sockets of this
// host listen on now: the range will leave them out (bindSteered).
func busyPorts(l *config.Listener, ps config.Ports) error {
	a, _ := l.ListenAddr()
	busy, err := othersListening(a, ps)
	if err != nil || len(busy) == 0 {
		return err
	}
	return fmt.Errorf("listener %s's range holds ports other sockets listen on now (%v; `ss -ltnp` names them): "+
		"the range will leave them out, so their clients never reach a CAS there; narrow the range or listen on the array's address", l.Name, busy)
}

// othersListening are the ports of ps, but the first (the steered
// socket's own, which a running stickylb holds), that a socket of this
// host listens on at an address host reaches.
func othersListening(host netip.Addr, ps config.Ports) ([]uint16, error) {
	busy, err := steer.Listening(host, ps)
	return slices.DeleteFunc(busy, func(p uint16) bool { return p == ps[0].First }), err
}
