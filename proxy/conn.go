//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/pool"
)

type closeWriter interface{ CloseWrite() error }

// The splice path and the half-close both rely on these.
var (
	_ closeWriter   = (*net.TCPConn)(nil)
	_ io.ReaderFrom = (*net.TCPConn)(nil)
)

// conn is one client connection from accept to its end, and the one
// owner of everything the connection holds: both sockets, its pin's
// lease, its client-limit slot, its backend's count of open connections
// and its idle timer. finish alone lets go of them, once; the listener
// only keeps the set of conns. All a connection is lives in this value,
// so it is the one thing to capture for a hand-over to another process.
//
// The fields above mu are written by the set-up, before the connection
// is published as open (under mu), and only read after; abort, info and
// CloseBackend look at backend and b only once it is open.
type conn struct {
	l      *Listener
	r      *Route // the route it was accepted under
	client *net.TCPConn
	id     uint64 // the listener's number for it, from 1
	start  time.Time

	from        netip.AddrPort // the client, as identified (PROXY header or socket)
	admitted    bool           // holds a slot of r.Limits for from
	refusal     Refusal        // why it was refused, if it was
	backend     net.Conn       // the backend leg, once dialled
	b           *pool.Backend  // its backend, once dialled
	lease       affinity.Lease // the pin it holds, once decided
	addr        string         // the backend's address
	attempts    int            // connects it took
	connectTime time.Duration  // from the first connect to the one that held
	stopIdle    func()
	releasePin  func()        // gives back its hold on a learned port, if it has one
	watch       *dcerpc.Watch // reads an endpoint mapper's stream (Route.InspectDCERPC)
	rpc         *rpcState     // reads its DCE/RPC session (Route.DCERPC), if it is read

	open                  atomic.Int32 // directions still copying
	toBackend, toClient   int64        // bytes copied each way
	backendErr, clientErr error        // how the copy to each ended

	mu     sync.Mutex
	opened bool        // copying: it reached its backend and was not cut first
	cut    Termination // why it was aborted, if it was
	ended  Termination // how it ended, as the directions tell; see noteEnd
	told   bool        // finish has taken its termination: too late to cut

	// A pause for a hand-over (move.go): pausing while it lasts, the
	// directions stopped so far, and where they hear whether it moved.
	pausing    bool
	parkedDirs int
	parks      chan struct{}
	verdict    chan bool
	// A half-close (copy.go): which side sent its FIN first, and until
	// when the other direction may run; kept so that a pause restores
	// the deadline and a hand-over carries it.
	half      HalfClosed
	halfUntil time.Time
}

// abort closes the connection for the reason given: the set-up or the
// copy directions then end on their own and finish it.
// It reports whether the reason is the connection's: false for one that
// was finishing already, which is not counted as cut.
func (c *conn) abort(why Termination) bool {
	c.mu.Lock()
	mine := !c.told && c.cut == ""
	if mine {
		c.cut = why
	}
	var be net.Conn
	if c.opened {
		be = c.backend
	}
	c.mu.Unlock()
	c.client.Close()
	if be != nil {
		be.Close()
	}
	return mine
}

// serve sets the connection up (identify, admit, decide and dial its
// backend), then hands the two copy directions to goroutines of their
// own; a connection that does not get that far is finished here.
func (c *conn) serve() {
	c.r = c.l.route.Load()
	if f := c.r.Observer.Accepted; f != nil {
		f(c.r.Name)
	}
	if !c.setUp() {
		c.finish()
		return
	}
	if c.r.IdleTimeout > 0 {
		c.stopIdle = watchIdle(c.client, c.backend, c.r.IdleTimeout, func() { c.abort(EndIdleTimeout) })
	}
	// The two directions run on goroutines of their own and this one
	// ends: the dial above grew its stack to several KiB, which an idle
	// connection would otherwise keep for hours. The last direction to
	// end finishes the connection.
	c.open.Store(2)
	toBackend, toClient := c.copiers()
	go c.clientToBackend(toBackend)
	go c.backendToClient(toClient)
}

// setUp takes the connection as far as an open backend leg, and says
// whether it got there: if not, it was refused (and the refusal logged)
// or cut.
func (c *conn) setUp() bool {
	r := c.r
	o, err := c.identify()
	c.from = o.Client
	if err != nil {
		c.refuse(unidentified(err), err, nil, "")
		return false
	}
	if r.Limits != nil {
		if why := r.Limits.admit(c.from.Addr()); why != "" {
			c.refuse(why, nil, nil, "")
			return false
		}
		c.admitted = true
	}
	if !c.connect() {
		return false
	}
	c.rpc = newRPCState(r.DCERPC)
	if err := c.prologue(o); err != nil {
		c.refuse(RefusedConnect, err, nil, "")
		return false
	}
	c.mu.Lock()
	c.opened = c.cut == ""
	opened := c.opened
	c.mu.Unlock()
	if !opened {
		return false
	}
	c.b.ConnOpened()
	if f := r.Observer.Opened; f != nil {
		f(r.Name, c.b, c.connectTime)
	}
	return true
}

// identify tells where the connection comes from: the socket, or the
// route's Identify (a PROXY header).
func (c *conn) identify() (Origin, error) {
	if c.r.Identify != nil {
		return c.r.Identify(c.client)
	}
	return socketOrigin(c.client), nil
}

// connect decides the client's backend and dials it, moving on to another
// backend when one refuses, at most r.Retries times, and says whether one
// took it; if none did, the client has been refused.
func (c *conn) connect() bool {
	r := c.r
	if r.pinholes != nil {
		return c.connectPinhole()
	}
	key := r.Keyer.Key(c.from)
	var failed []Failure
	start := time.Now()
	port := c.backendPort()
	clientChosen := r.Port == 0 && r.ClientPorts.Contains(port)
	for c.attempts = 1; ; c.attempts++ {
		b, lease, err := place(r, key, failed)
		if err != nil {
			c.attempts--
			c.refuse(decideRefusal(err), err, nil, "")
			return false
		}
		addr := b.Addr(port)
		ctx, cancel := context.WithTimeout(context.Background(), r.connectTimeout())
		be, err := r.dialer().Dial(ctx, c.from, addr)
		cancel()
		if err == nil {
			b.ConnectOK()
			c.backend, c.b, c.lease, c.addr, c.connectTime = be, b, lease, addr, time.Since(start)
			return true
		}
		lease.Release()
		if errno, why := localFault(r, b, err); errno != "" {
			c.refuse(RefusedLocal, fmt.Errorf("%s: %w", why, err), b, errno)
			return false
		}
		if clientChosen {
			c.refuse(RefusedClientPort, clientPortError(b, addr, err), b, "")
			return false
		}
		why := c.connectFailed(b, addr, err)
		failed = append(failed, Failure{b, why})
		switch {
		case r.Policy.Reject:
			err = fmt.Errorf("pinned backend %s %s failed (%s) and on_down is reject: %w", b.Name, addr, why, err)
			c.refuse(RefusedRejected, err, nil, "")
			return false
		case c.attempts > r.Retries:
			c.refuse(RefusedConnect, fmt.Errorf("backend %s %s: %w", b.Name, addr, err), nil, "")
			return false
		}
	}
}

// backendPort is the port to dial on the backend: the route's, or for a
// listener of several ports (Route.Port 0) the one the client dialled.
func (c *conn) backendPort() int {
	if c.r.Port != 0 {
		return c.r.Port
	}
	return c.client.LocalAddr().(*net.TCPAddr).Port
}

// decide picks the backend for this connection: through the affinity
// table when the pool keeps pins, so that concurrent first connections of
// one client agree, else straight from the policy.
func place(r *Route, key affinity.Key, failed []Failure) (*pool.Backend, affinity.Lease, error) {
	h := key.Hash()
	if r.Table == nil {
		b, _, err := r.Policy.Place(r.Pool, affinity.Current{}, h, failed)
		return b, affinity.Lease{}, err
	}
	var chosen *pool.Backend
	lease, err := r.Table.Acquire(key, func(cur affinity.Current) (string, affinity.RepinReason, error) {
		b, why, err := r.Policy.Place(r.Pool, cur, h, failed)
		if err != nil {
			return "", "", err
		}
		chosen = b
		return b.Name, why, nil
	})
	return chosen, lease, err
}

// finish is the connection's one clean-up, run once: by serve when the
// connection never reached the copy, else by the last copy direction to
// end. It records how the connection ended (Observer.Ended, and the
// closing log line for one that was open), then lets go of everything
// the connection held.
func (c *conn) finish() {
	r := c.r
	e := Ending{Termination: c.termination(), Refusal: c.refusal, Duration: time.Since(c.start),
		ToBackend: c.toBackend, ToClient: c.toClient}
	if c.rpc != nil {
		e.RPCUnparsed = c.rpc.t.Unparsed()
	}
	if c.opened {
		c.b.ConnClosed()
		e.Backend = c.b
	}
	if f := r.Observer.Ended; f != nil {
		f(r.Name, e)
	}
	if c.opened && c.l.log.Enabled(context.Background(), slog.LevelInfo) {
		c.log(e)
	}
	c.release()
}

// release lets go of all the connection holds but its backend's count:
// its sockets, its pin's lease, its client-limit slot, its place in the
// listener.
func (c *conn) release() {
	c.client.Close()
	if c.backend != nil {
		c.backend.Close()
	}
	if c.stopIdle != nil {
		c.stopIdle()
	}
	c.lease.Release()
	if c.releasePin != nil {
		c.releasePin()
	}
	if c.watch != nil {
		c.l.pinholes.unparsed.Add(uint64(c.watch.Unparsed()))
	}
	if c.admitted {
		c.r.Limits.done(c.from.Addr())
	}
	c.l.forget(c)
}

// termination is how the connection ended: why it was cut, if it was,
// else why it was refused, else how the directions tell it.
func (c *conn) termination() Termination {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.told = true
	switch {
	case c.cut != "":
		return c.cut
	case c.refusal != "":
		return refusalEnd(c.refusal)
	case c.ended != "":
		return c.ended
	}
	return EndClientClosed
}

// unidentified is the refusal of a connection whose origin could not be
// told: an untrusted source or a bad PROXY header apart.
func unidentified(err error) Refusal {
	switch {
	case errors.Is(err, ErrProxyUntrusted):
		return RefusedProxyUntrusted
	case errors.Is(err, ErrProxyHeader):
		return RefusedProxyHeader
	}
	return RefusedIdentify
}

// decideRefusal is the refusal of a client no backend was decided for.
func decideRefusal(err error) Refusal {
	if errors.Is(err, ErrRejected) {
		return RefusedRejected
	}
	return RefusedNoBackend
}
