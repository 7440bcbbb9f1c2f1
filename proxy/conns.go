//go:build linux

package proxy

import (
	"net/netip"
	"time"

	"github.com/stickylb/stickylb/pool"
)

// What an operator sees of open connections, and closes: HAProxy's `show
// sess` and `shutdown session`.

// ConnInfo is an open connection that reached a backend.
type ConnInfo struct {
	ID      uint64 // unique within its listener
	Client  netip.AddrPort
	Backend *pool.Backend
	Since   time.Time // accepted
	// HalfClosed names the side that has sent its FIN, while the other
	// direction goes on; empty while both do.
	HalfClosed HalfClosed
	// Port is the port the client dialled on the listener.
	Port int
	// RPC is what reading its DCE/RPC session learned; nil when it is
	// not read (Route.DCERPC off, or a connection handed over at an
	// upgrade, which is not read again).
	RPC *RPCSession
}

// Conns returns the listener's connections that reached a backend.
func (l *Listener) Conns() []ConnInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ConnInfo, 0, len(l.conns))
	for c := range l.conns {
		if in, ok := c.info(); ok {
			out = append(out, in)
		}
	}
	return out
}

// CloseConns closes the listener's connections for which match is true,
// as an operator's act, and returns how many it closed. Their clients'
// pins stay.
func (l *Listener) CloseConns(match func(ConnInfo) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := range l.conns {
		if in, ok := c.info(); ok && match(in) && c.abort(EndCutOperator) {
			n++
		}
	}
	return n
}

func (c *conn) info() (ConnInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened || c.cut != "" {
		return ConnInfo{}, false
	}
	in := ConnInfo{ID: c.id, Client: c.from, Backend: c.b, Since: c.start, HalfClosed: c.half, Port: localPort(c.client)}
	if c.rpc != nil {
		in.RPC = c.rpc.snapshot() // its own lock, taken under c.mu only here
	}
	return in, true
}

// openOn is the connection's backend while it is open and not cut, else
// nil.
func (c *conn) openOn() *pool.Backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opened || c.cut != "" {
		return nil
	}
	return c.b
}
