//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TransparentDialer dials the backend from the client's own address
// (Linux IP_TRANSPARENT), so the CAS sees and logs each client as it did
// behind Windows NLB. The kernel picks the source port at connect time.
// It needs CAP_NET_ADMIN, and routing that delivers the CAS's replies,
// addressed to the client, to this host's socket (docs/deploy.md).
type TransparentDialer struct {
	// Keepalive is as NetDialer's.
	Keepalive time.Duration
}

// ErrTransparent says this process may not use transparent sockets.
var ErrTransparent = errors.New("transparent mode needs CAP_NET_ADMIN (run as root, or grant it: AmbientCapabilities=CAP_NET_ADMIN in the systemd unit)")

// ErrFamily says a client's address cannot be the source of a
// connection to the backend: one is IPv4, the other IPv6. It wraps
// EAFNOSUPPORT, so package localerr takes it for this host's fault (its
// listeners and backends do not fit), never the backend's.
var ErrFamily = fmt.Errorf("transparent mode cannot connect a client of one address family to a backend of the other: "+
	"give the pool backends of the clients' family, or listen on addresses of the backends' family only (docs/deploy.md): %w", syscall.EAFNOSUPPORT)

// Dial connects to addr from client's address.
func (d TransparentDialer) Dial(ctx context.Context, client netip.AddrPort, addr string) (net.Conn, error) {
	if to, err := netip.ParseAddrPort(addr); err == nil && to.Addr().Unmap().Is4() != client.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, client.Addr(), ErrFamily)
	}
	c, err := d.dial(ctx, client, addr)
	var ae *net.AddrError
	if errors.As(err, &ae) && strings.Contains(ae.Err, "no suitable address") {
		// A host name with no address of the client's family.
		return nil, fmt.Errorf("dial %s from %s: %w", addr, client.Addr(), ErrFamily)
	}
	return c, err
}

func (d TransparentDialer) dial(ctx context.Context, client netip.AddrPort, addr string) (net.Conn, error) {
	nd := net.Dialer{
		KeepAliveConfig: keepalive(d.Keepalive),
		LocalAddr:       &net.TCPAddr{IP: client.Addr().AsSlice()},
		Control:         func(network, _ string, c syscall.RawConn) error { return transparent(network, c) },
	}
	if d.Keepalive <= 0 {
		nd.KeepAlive = -1
	}
	return nd.DialContext(ctx, "tcp", addr)
}

// transparent lets the socket bind to an address that is not this
// host's, and leaves the port to connect time.
func transparent(network string, c syscall.RawConn) error {
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if network == "tcp6" {
		level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), level, opt, 1); e != nil {
			serr = fmt.Errorf("%w: setsockopt IP_TRANSPARENT: %w", ErrTransparent, e)
			return
		}
		if network != "tcp6" {
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// CheckTransparent says whether this process may make transparent
// sockets, so that start-up, not the first connection, reports it.
func CheckTransparent() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("transparent mode: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
		return fmt.Errorf("%w: %w", ErrTransparent, err)
	}
	return nil
}

// ErrNoTransparentRoute says no routing delivers the backends' replies,
// addressed to clients, to this host's transparent sockets.
var ErrNoTransparentRoute = errors.New(`no "local 0.0.0.0/0" route in a policy routing table: the CAS hosts' replies to clients will not reach stickylb's transparent sockets (ip route add local 0.0.0.0/0 dev lo table 100; ip rule add ... lookup 100; see docs/deploy.md)`)

// CheckTransparentRoute looks, in this network namespace, for the route
// transparent mode needs: "local 0.0.0.0/0" in some table, which a policy
// rule (by incoming interface or firewall mark) sends the replies to.
func CheckTransparentRoute() error {
	b, err := syscall.NetlinkRIB(syscall.RTM_GETROUTE, syscall.AF_INET)
	if err != nil {
		return fmt.Errorf("transparent mode: read the routing tables: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return fmt.Errorf("transparent mode: read the routing tables: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWROUTE || len(m.Data) < syscall.SizeofRtMsg {
			continue
		}
		// struct rtmsg: family, dst_len, src_len, tos, table, protocol,
		// scope, type.
		if dstLen, typ := m.Data[1], m.Data[7]; dstLen == 0 && typ == syscall.RTN_LOCAL {
			return nil
		}
	}
	return ErrNoTransparentRoute
}
