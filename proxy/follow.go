//go:build linux

package proxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/dcerpc"
)

// connectPinhole dials the backend of a connection to a learned port:
// the CAS that handed the port to this client, at that port, and no
// other. A client the port was not handed to is refused; so is one
// whose CAS cannot keep pinned clients (down, in maintenance, removed),
// since the port means nothing, or something else, on another CAS: the
// client then asks the endpoint mapper again, as Outlook does, and gets
// a port of its new CAS.
func (c *conn) connectPinhole() bool {
	r := c.r
	port := uint16(c.r.Port)
	name, iface, release, ok := r.pinholes.hold(c.from.Addr(), port)
	if !ok {
		c.refuse(RefusedNoPinhole, fmt.Errorf("port %d was not handed to %s by an endpoint mapper through this listener (or its pinhole lapsed)", port, c.from.Addr()), nil, "")
		return false
	}
	c.releasePin = release
	b := r.Pool.Backend(name)
	if b == nil {
		c.refuse(RefusedPinholeDown, fmt.Errorf("backend %s, which handed out port %d for %s, is no longer in pool %s", name, port, iface, r.Pool.Name), nil, "")
		return false
	}
	if keeps, why := b.KeepsPinned(); !keeps {
		c.refuse(RefusedPinholeDown, fmt.Errorf("backend %s, which handed out port %d for %s, is %s", name, port, iface, why), b, "")
		return false
	}
	if r.Table != nil {
		lease, err := r.Table.Acquire(r.Keyer.Key(c.from), holdPin(name))
		if err != nil {
			c.refuse(RefusedNoBackend, fmt.Errorf("affinity table: %w", err), b, "")
			return false
		}
		c.lease = lease
	}
	c.attempts = 1
	addr := b.Addr(int(port))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.connectTimeout())
	be, err := r.dialer().Dial(ctx, c.from, addr)
	cancel()
	if err != nil {
		if errno, why := localFault(r, b, err); errno != "" {
			c.refuse(RefusedLocal, fmt.Errorf("%s: %w", why, err), b, errno)
			return false
		}
		why := c.connectFailed(b, addr, err)
		c.refuse(RefusedConnect, fmt.Errorf("backend %s %s (%s), which handed out the port for %s: %w", b.Name, addr, why, iface, err), b, "")
		return false
	}
	b.ConnectOK()
	c.backend, c.b, c.addr, c.connectTime = be, b, addr, time.Since(start)
	return true
}

// holdPin is the pin rule of a connection to a learned port: it holds
// the client's pin while it is open, so a session of hours keeps its
// pin however long ago it asked the endpoint mapper. A client with no
// pin (it expired) is pinned again to the CAS that handed the port out,
// so its next ept_map goes there too. A pin that moved since (the CAS
// was down, the client asked again elsewhere) stays where it is: the
// pin decides the client's next endpoint-mapper connection, while this
// one goes where its port means something.
func holdPin(handedBy string) affinity.Chooser {
	return func(cur affinity.Current) (string, affinity.RepinReason, error) {
		if cur.Backend == "" {
			return handedBy, "", nil
		}
		return cur.Backend, "", nil
	}
}

// copier is how one direction moves its bytes: relay, or a watch's tap.
type copier func(dst, src net.Conn, count func(int64)) (int64, error)

// copiers are the connection's two directions' copies: relay both ways,
// or on a listener that inspects the endpoint mapper, a tap that hands
// every piece read to the watch (and the DCE/RPC tracker, if the
// connection is read) before passing it on unchanged, or for a
// connection read as DCE/RPC, the tracker's copies (rpc.go).
func (c *conn) copiers() (toBackend, toClient copier) {
	switch {
	case c.r.InspectDCERPC:
	case c.rpc != nil:
		return c.rpcCopiers()
	default:
		return relay, relay
	}
	c.watch = &dcerpc.Watch{}
	client, backend := c.from.Addr(), c.b.Name
	toBackend = func(dst, src net.Conn, count func(int64)) (int64, error) {
		return tap(dst, src, count, c.watch, func(p []byte) {
			c.watch.FromClient(p)
			if c.rpc != nil {
				c.rpcFromClient(p)
			}
		})
	}
	toClient = func(dst, src net.Conn, count func(int64)) (int64, error) {
		return tap(dst, src, count, c.watch, func(p []byte) {
			if c.rpc != nil {
				c.rpcFromServer(p)
			}
			if eps := c.watch.FromServer(p); len(eps) > 0 {
				c.l.pinholes.learn(client, backend, eps)
			}
		})
	}
	return toBackend, toClient
}

// tap copies src to dst as relay does, calling see with every piece
// before it is written, so what see learns (a pinhole) is in place
// before the peer has the bytes; once the watch has lost the stream both
// ways (it is not DCE/RPC), relay copies on alone, by splice for bulk.
func tap(dst, src net.Conn, count func(int64), w *dcerpc.Watch, see func([]byte)) (int64, error) {
	return relaySeeing(dst, src, count, func(p []byte) bool {
		see(p)
		return !w.Lost()
	})
}
