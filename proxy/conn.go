//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/localerr"
	"github.com/stickylb/stickylb/pool"
)

type closeWriter interface{ CloseWrite() error }

// The splice path and the half-close both rely on these.
var (
	_ closeWriter   = (*net.TCPConn)(nil)
	_ io.ReaderFrom = (*net.TCPConn)(nil)
)

// conn is one client connection and, once dialled, its backend leg.
type conn struct {
	l      *Listener
	client *net.TCPConn
	start  time.Time

	id uint64 // the listener's number for it, from 1

	mu      sync.Mutex
	backend net.Conn
	b       *pool.Backend  // the backend once dialled
	from    netip.AddrPort // the client, as identified (PROXY header or socket), once dialled
	aborted bool
	cut     Termination // why it was aborted, if it was
}

// abort closes both legs for the reason given; the copy goroutines then
// end on their own.
func (c *conn) abort(why Termination) {
	c.mu.Lock()
	c.aborted = true
	if c.cut == "" {
		c.cut = why
	}
	be := c.backend
	c.mu.Unlock()
	c.client.Close()
	if be != nil {
		be.Close()
	}
}

// serve sets the connection up: identify the client, decide and dial its
// backend, then hand the two copy directions to goroutines of their own.
func (c *conn) serve() {
	handedOff := false
	defer func() {
		if !handedOff {
			c.client.Close()
			c.l.forget(c)
		}
	}()
	r := c.l.route.Load()
	if r.Observer != nil {
		r.Observer.Accepted(r.Name)
	}
	o, err := c.identify(r)
	if err != nil {
		c.unidentified(r, o, err)
		return
	}
	client := o.Client
	if r.Limits != nil {
		if why := r.Limits.admit(client.Addr()); why != "" {
			c.limited(r, client, why)
			return
		}
		defer func() {
			if !handedOff {
				r.Limits.done(client.Addr())
			}
		}()
	}
	s, err := c.connect(r, client)
	if err != nil {
		return // refused and logged by connect
	}
	if err := s.prologue(o); err != nil {
		s.lease.Release()
		s.be.Close()
		c.refuse(r, client, RefusedConnect, err, s.attempts)
		return
	}
	c.mu.Lock()
	aborted := c.aborted
	c.backend, c.b, c.from = s.be, s.b, client
	c.mu.Unlock()
	if aborted {
		s.lease.Release()
		s.be.Close()
		return
	}
	s.b.ConnOpened()
	if r.Observer != nil {
		r.Observer.Opened(r.Name, s.b, s.connectTime)
	}
	if r.IdleTimeout > 0 {
		s.stopIdle = watchIdle(c.client, s.be, r.IdleTimeout, func() { c.abort(EndIdleTimeout) })
	}
	// The two directions run on goroutines of their own and this one
	// ends: the dial above grew its stack to several KiB, which an idle
	// connection would otherwise keep for hours. The last direction to
	// end closes the connection (session.end).
	handedOff = true
	s.open.Store(2)
	go s.clientToBackend()
	go s.backendToClient()
}

// connect decides the client's backend and dials it, moving on to another
// backend when one refuses, at most r.Retries times. On failure the
// client has been refused (logged and counted) and the error says why.
func (c *conn) connect(r *Route, client netip.AddrPort) (*session, error) {
	key := r.Keyer.Key(client)
	var failed []Failure
	start := time.Now()
	port := c.backendPort(r)
	clientChosen := r.Port == 0 && r.ClientPorts.Contains(port)
	for attempt := 1; ; attempt++ {
		b, lease, err := decide(r, key, failed)
		if err != nil {
			why := RefusedNoBackend
			if errors.Is(err, ErrRejected) {
				why = RefusedRejected
			}
			c.refuse(r, client, why, err, attempt-1)
			return nil, err
		}
		addr := b.Addr(port)
		ctx, cancel := context.WithTimeout(context.Background(), r.connectTimeout())
		be, err := r.dialer().Dial(ctx, client, addr)
		cancel()
		if err == nil {
			b.ConnectOK()
			return &session{c: c, r: r, b: b, be: be, lease: lease, client: client, addr: addr,
				attempts: attempt, connectTime: time.Since(start)}, nil
		}
		lease.Release()
		if errno, why := localFault(r, b, err); errno != "" {
			c.localDialError(r, client, b, errno, why, err)
			return nil, err
		}
		if clientChosen {
			return nil, c.clientPortFailed(r, client, b, addr, attempt, err)
		}
		why := c.connectFailed(r, client, b, addr, attempt, err)
		failed = append(failed, Failure{b, why})
		switch {
		case r.Policy.Reject:
			err = fmt.Errorf("pinned backend %s %s failed (%s) and on_down is reject: %w", b.Name, addr, why, err)
			c.refuse(r, client, RefusedRejected, err, attempt)
			return nil, err
		case attempt > r.Retries:
			err = fmt.Errorf("backend %s %s: %w", b.Name, addr, err)
			c.refuse(r, client, RefusedConnect, err, attempt)
			return nil, err
		}
	}
}

// backendPort is the port to dial on the backend: the route's, or for a
// listener of several ports (Route.Port 0) the one the client dialled.
func (c *conn) backendPort(r *Route) int {
	if r.Port != 0 {
		return r.Port
	}
	return c.client.LocalAddr().(*net.TCPAddr).Port
}

// decide picks the backend for this connection: through the affinity
// table when the pool keeps pins, so that concurrent first connections of
// one client agree, else straight from the policy.
func decide(r *Route, key affinity.Key, failed []Failure) (*pool.Backend, affinity.Lease, error) {
	h := key.Hash()
	if r.Table == nil {
		b, _, err := r.Policy.Decide(r.Pool, affinity.Current{}, h, failed)
		return b, affinity.Lease{}, err
	}
	var chosen *pool.Backend
	lease, err := r.Table.Acquire(key, func(cur affinity.Current) (string, affinity.RepinReason, error) {
		b, why, err := r.Policy.Decide(r.Pool, cur, h, failed)
		if err != nil {
			return "", "", err
		}
		chosen = b
		return b.Name, why, nil
	})
	return chosen, lease, err
}

// connectFailed counts and logs a failed backend connect, says how it
// failed, and runs the passive check: enough failed connects in a row
// take the backend down before the next active check would. The log line
// comes at most every few seconds per backend: in an outage every client
// fails alike.
func (c *conn) connectFailed(r *Route, client netip.AddrPort, b *pool.Backend, addr string, attempt int, err error) DialFailure {
	why := DialFailureOf(err)
	if r.Observer != nil {
		r.Observer.ConnectFailed(r.Name, b, why)
	}
	inRow := b.ConnectFailed()
	if r.PassiveFall > 0 && inRow >= r.PassiveFall && b.MarkDown(fmt.Sprintf("passive check: %d connects failed in a row: %v", inRow, err)) {
		c.l.log.Warn("backend down: passive check", "pool", r.Pool.Name, "backend", b.Name, "failed_connects", r.PassiveFall, "error", err)
		if r.OnPassiveDown != nil {
			r.OnPassiveDown(b, err)
		}
	}
	fl := c.l.failLog(b)
	fl.Do(func(n int) {
		c.l.log.Warn("backend connect failed", "listener", r.Name, "pool", r.Pool.Name, "client", client,
			"backend", b.Name, "addr", addr, "reason", why, "attempt", attempt, "error", err, "count", n, "note", fl.Note()+" (per backend)")
	})
	return why
}

// clientPortFailed refuses a client whose connect to a port of a range
// failed. The port is the client's choice: three connections to a port
// no CAS listens on took every CAS down through the passive check
// before, so the backend is not blamed, no other backend is tried (the
// port means something else or nothing there) and the pin stays.
func (c *conn) clientPortFailed(r *Route, client netip.AddrPort, b *pool.Backend, addr string, attempts int, err error) error {
	err = fmt.Errorf("backend %s %s: the port the client dialled, in a range, took no connection (%s): "+
		"a port of a range is the client's choice, so the backend is not blamed and no other is tried: %w", b.Name, addr, DialFailureOf(err), err)
	c.refuse(r, client, RefusedClientPort, err, attempts)
	return err
}

// limited refuses a connection a client limit stops: counted, and logged
// at most every few seconds, since a client over its limit keeps trying.
func (c *conn) limited(r *Route, client netip.AddrPort, why Refusal) {
	if r.Observer != nil {
		r.Observer.Refused(r.Name, why)
		r.Observer.Ended(r.Name, EndRefused)
	}
	c.l.limitLog.Do(func(n int) {
		c.l.log.Warn("connection refused: client over its limit", "listener", r.Name, "pool", r.Pool.Name,
			"client", client, "reason", why, "count", n, "note", c.l.limitLog.Note())
	})
}

// localFault says whether a failed dial is this host's fault rather
// than the backend's, and if so names it (an errno, or
// ErrnoNoReturnRoute) and says what to fix: the one place that decides
// whom a failed dial is blamed on.
func localFault(r *Route, b *pool.Backend, err error) (errno, why string) {
	switch errno = localerr.Name(err); {
	case errors.Is(err, ErrFamily):
		return errno, "connection refused: this host's config, not the backend's fault: a transparent pool got a client of an address family its backend lacks"
	case errno != "":
		return errno, "connection refused: this host is out of a resource, not the backend's fault; raise the file limit (LimitNOFILE), " +
			"widen net.ipv4.ip_local_port_range or lower the load"
	case noReturnRoute(r, b, err):
		return ErrnoNoReturnRoute, "connection refused: this host's routing, not the backend's fault: transparent connects time out while the backend answers " +
			"checks from this host's own address, so its replies to clients do not come back here (the policy route; docs/deploy.md)"
	}
	return "", ""
}

// localDialError refuses a client whose backend leg could not be opened
// for a fault of this host (localFault), why says which. The backend is
// not to blame: no passive check counts it, the pin stays, no other
// backend is tried (it would fail alike), and the log line is
// rate-limited since such faults come in floods.
func (c *conn) localDialError(r *Route, client netip.AddrPort, b *pool.Backend, errno, why string, err error) {
	if r.Observer != nil {
		r.Observer.LocalError(r.Name, "dial", errno)
		r.Observer.Refused(r.Name, RefusedLocal)
		r.Observer.Ended(r.Name, EndRefused)
	}
	c.l.localLog.Do(func(n int) {
		c.l.log.Error(why, "listener", r.Name, "client", client,
			"backend", b.Name, "errno", errno, "error", err, "count", n, "note", c.l.localLog.Note())
	})
}

// identify tells where the connection comes from: the socket, or the
// route's Identify (a PROXY header).
func (c *conn) identify(r *Route) (Origin, error) {
	if r.Identify != nil {
		return r.Identify(c.client)
	}
	return socketOrigin(c.client), nil
}

// unidentified refuses a connection whose origin could not be told: an
// untrusted source or a bad PROXY header is counted apart and logged at
// most every few seconds, since such connections come in floods.
func (c *conn) unidentified(r *Route, o Origin, err error) {
	why := RefusedIdentify
	switch {
	case errors.Is(err, ErrProxyUntrusted):
		why = RefusedProxyUntrusted
	case errors.Is(err, ErrProxyHeader):
		why = RefusedProxyHeader
	default:
		c.refuse(r, o.Client, why, err, 0)
		return
	}
	if r.Observer != nil {
		r.Observer.Refused(r.Name, why)
		r.Observer.Ended(r.Name, EndRefused)
	}
	c.l.proxyLog.Do(func(n int) {
		c.l.log.Warn("connection refused: PROXY protocol", "listener", r.Name, "source", o.Client, "reason", why,
			"error", err, "count", n, "note", c.l.proxyLog.Note())
	})
}

// refuse closes a client without a backend, after attempts connects:
// counted, and logged at most every few seconds per reason with the
// count, since when no backend can take a client none can take the next
// (200 refusals gave 200 lines before).
func (c *conn) refuse(r *Route, client netip.AddrPort, why Refusal, err error, attempts int) {
	end := EndRefused
	if why == RefusedConnect {
		end = EndConnectFailed
	}
	if r.Observer != nil {
		r.Observer.Refused(r.Name, why)
		r.Observer.Ended(r.Name, end)
	}
	rl := c.l.refuseLog(why)
	rl.Do(func(n int) {
		c.l.log.Warn("connection refused", "listener", r.Name, "client", client, "pool", r.Pool.Name,
			"termination", end, "reason", why, "attempts", attempts, "error", err, "count", n, "note", rl.Note())
	})
}

// ErrnoNoReturnRoute names, among local errors, a transparent connect
// that timed out to a backend that passes its checks.
const ErrnoNoReturnRoute = "no-return-route"

// noReturnRoute says whether a failed connect is this host's routing
// rather than the backend: in transparent mode, a connect from the
// client's address that timed out to a backend whose last check, from
// this host's own address, passed moments ago. The backend's replies to
// clients go elsewhere (no policy route back to stickylb): marking it
// down and moving its clients would split sessions on a healthy CAS.
func noReturnRoute(r *Route, b *pool.Backend, err error) bool {
	if _, transparent := r.dialer().(TransparentDialer); !transparent || DialFailureOf(err) != DialTimeout {
		return false
	}
	chk, ok := b.LastCheck()
	return ok && chk.Err == "" && time.Since(chk.At) < returnRouteWindow
}

// returnRouteWindow is how recent a passed check must be to vouch for a
// backend whose transparent connects time out.
const returnRouteWindow = 30 * time.Second
