//go:build linux

package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Origin is where a connection comes from and where it was headed: from
// the socket, or from a PROXY protocol header when another balancer sits
// in front.
type Origin struct {
	Client netip.AddrPort // the client's identity: affinity key, logs, metrics
	Dest   netip.AddrPort // the address the client connected to
	// Early holds bytes the client sent right behind a PROXY header,
	// read while reading it; they go to the backend first.
	Early []byte
}

// socketOrigin is the origin the socket itself tells. An IPv4 client of
// a wildcard listener arrives as ::ffff:a.b.c.d; it is a.b.c.d here.
func socketOrigin(c *net.TCPConn) Origin {
	return Origin{Client: unmapped(c.RemoteAddr().(*net.TCPAddr).AddrPort()), Dest: unmapped(c.LocalAddr().(*net.TCPAddr).AddrPort())}
}

var (
	// ErrProxyUntrusted refuses a connection to a PROXY listener from a
	// source that is not trusted to say who the client is.
	ErrProxyUntrusted = errors.New("not in proxy_trusted: only the balancers listed there may connect to a proxy_protocol listener")
	// ErrProxyHeader refuses a connection whose PROXY header is missing,
	// malformed, truncated or too slow.
	ErrProxyHeader = errors.New("no valid PROXY protocol header")
)

// ProxyProtocol accepts PROXY protocol v1 and v2 headers on a listener
// whose clients come through other balancers (read with
// github.com/pires/go-proxyproto). As with HAProxy's accept-proxy and
// nginx's proxy_protocol, every connection must carry a header, so only
// the sources in Trusted may connect: nobody else can claim to be a
// client.
type ProxyProtocol struct {
	Trusted []netip.Prefix
	// Timeout bounds the wait for the header; 0 means 3s.
	Timeout time.Duration
}

// Identify reads the PROXY header of c, as Route.Identify.
func (p *ProxyProtocol) Identify(c *net.TCPConn) (Origin, error) {
	o := socketOrigin(c)
	if !slices.ContainsFunc(p.Trusted, func(n netip.Prefix) bool { return n.Contains(o.Client.Addr()) }) {
		return o, fmt.Errorf("%s: %w", o.Client, ErrProxyUntrusted)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	return readHeader(bufio.NewReader(c), o)
}

// readHeader reads a PROXY header from r, which reads the socket of a
// connection from o, and returns the origin it names, with the bytes r
// read past it. A LOCAL header (the front balancer's own health check)
// keeps the socket's origin.
func readHeader(r *bufio.Reader, o Origin) (Origin, error) {
	h, err := proxyproto.Read(r)
	if err != nil {
		return o, fmt.Errorf("%s: %w: %w", o.Client, ErrProxyHeader, err)
	}
	if n := r.Buffered(); n > 0 {
		o.Early, _ = r.Peek(n)
	}
	if h.Command.IsLocal() {
		return o, nil
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		return o, fmt.Errorf("%s: %w: not a TCP header (%v)", o.Client, ErrProxyHeader, h.TransportProtocol)
	}
	o.Client, o.Dest = unmapped(src.AddrPort()), unmapped(dst.AddrPort())
	return o, nil
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// proxyHeader is the PROXY header of the given version (1 or 2) that
// tells a backend who the client is.
func proxyHeader(version int, o Origin) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(byte(version), net.TCPAddrFromAddrPort(o.Client), net.TCPAddrFromAddrPort(o.Dest))
	return h.Format()
}
