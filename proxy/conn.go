package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/pool"
)

type closeWriter interface{ CloseWrite() error }

// The splice path and the half-close both rely on these.
var (
	_ closeWriter   = (*net.TCPConn)(nil)
	_ io.ReaderFrom = (*net.TCPConn)(nil)
)

// ErrNoBackend means no backend of the pool could take the client.
var ErrNoBackend = errors.New("no backend can take the client: every backend is down, draining, in maintenance or refused")

// conn is one client connection and, once dialled, its backend leg.
type conn struct {
	l      *Listener
	client *net.TCPConn
	start  time.Time

	mu      sync.Mutex
	backend net.Conn
	b       *pool.Backend // the backend once dialled
	aborted bool
}

// abort closes both legs; the copy goroutines then end on their own.
func (c *conn) abort() {
	c.mu.Lock()
	c.aborted = true
	be := c.backend
	c.mu.Unlock()
	c.client.Close()
	if be != nil {
		be.Close()
	}
}

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
	client, err := c.identify()
	if err != nil {
		c.refuse(r, netip.AddrPort{}, "identify", err)
		return
	}
	key := r.Keyer.Key(client)

	var (
		be     net.Conn
		b      *pool.Backend
		lease  affinity.Lease
		failed []*pool.Backend
		dec    = "none"
	)
	for attempt := 0; ; attempt++ {
		b, lease, err = c.pick(r, key, failed)
		if err != nil {
			c.refuse(r, client, "no-backend", err)
			return
		}
		if r.Table != nil {
			dec = lease.Decision.String()
		}
		addr := b.Addr(r.Port)
		ctx, cancel := context.WithTimeout(context.Background(), r.ConnectTimeout)
		be, err = r.Dialer.Dial(ctx, client, addr)
		cancel()
		if err == nil {
			break
		}
		lease.Release()
		reason := dialReason(err)
		if r.Observer != nil {
			r.Observer.ConnectFailed(r.Name, b, reason)
		}
		// Passive check: enough failed connects in a row take the
		// backend down before the next active check would.
		if r.PassiveFall > 0 && b.ConnectFailed() >= r.PassiveFall && b.SetHealthy(false) {
			c.l.log.Warn("backend down: passive check", "backend", b.Name, "failed_connects", r.PassiveFall, "error", err)
			if r.OnPassiveDown != nil {
				r.OnPassiveDown(b, err)
			}
		}
		c.l.log.Warn("backend connect failed", "listener", r.Name, "client", client,
			"backend", b.Name, "addr", addr, "reason", reason, "attempt", attempt+1, "error", err)
		failed = append(failed, b)
		if r.Reject {
			c.refuse(r, client, "rejected", fmt.Errorf("pinned backend %s %s failed (%s) and on_down is reject: %w", b.Name, addr, reason, err))
			return
		}
		if attempt >= r.Retries {
			c.refuse(r, client, "connect-failed", fmt.Errorf("backend %s %s: %w", b.Name, addr, err))
			return
		}
	}
	b.ConnectOK()
	c.mu.Lock()
	aborted := c.aborted
	c.backend, c.b = be, b
	c.mu.Unlock()
	if aborted {
		lease.Release()
		be.Close()
		return
	}
	b.ConnOpened()
	if r.Observer != nil {
		r.Observer.Opened(r.Name, b)
	}
	s := &session{c: c, r: r, b: b, be: be, lease: lease, client: client, dec: dec}
	if r.IdleTimeout > 0 {
		s.stopIdle = watchIdle(c.client, be, r.IdleTimeout, c.abort)
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

// session is a connection once its backend leg is open: what the two
// copy directions share and the last of them reports.
type session struct {
	c      *conn
	r      *Route
	b      *pool.Backend
	be     net.Conn
	lease  affinity.Lease
	client netip.AddrPort
	dec    string

	stopIdle       func()
	open           atomic.Int32 // directions still copying
	up, down       int64        // bytes to the backend, to the client
	upErr, downErr error
}

// clientToBackend and backendToClient are the two directions, named so a
// goroutine dump says which one is stuck.
func (s *session) clientToBackend() {
	s.up, s.upErr = halfCopy(s.be, s.c.client, s.r.HalfCloseTimeout, &s.open)
	s.end()
}

func (s *session) backendToClient() {
	s.down, s.downErr = halfCopy(s.c.client, s.be, s.r.HalfCloseTimeout, &s.open)
	s.end()
}

// end runs when a direction has ended; the last one closes the
// connection and reports it. The atomic decrement orders the other
// direction's results before this read of them.
func (s *session) end() {
	if s.open.Add(-1) != 0 {
		return
	}
	c, r, b := s.c, s.r, s.b
	defer c.l.forget(c)
	defer c.client.Close()
	defer s.be.Close()
	defer s.lease.Release()
	if s.stopIdle != nil {
		s.stopIdle()
	}
	err := errors.Join(quiet(s.upErr), quiet(s.downErr))
	b.ConnClosed()
	b.AddBytes(s.up, s.down)
	d := time.Since(c.start)
	if r.Observer != nil {
		r.Observer.Closed(r.Name, b, s.up, s.down, d)
	}
	if !c.l.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("listener", r.Name),
		slog.String("client", s.client.String()),
		slog.String("backend", b.Name),
		slog.String("decision", s.dec),
		slog.Int64("bytes_in", s.up),
		slog.Int64("bytes_out", s.down),
		slog.Duration("duration", d),
	}
	if s.lease.Reason != "" {
		attrs = append(attrs, slog.String("repin_reason", s.lease.Reason))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.l.log.LogAttrs(context.Background(), slog.LevelInfo, "connection closed", attrs...)
}

func (c *conn) identify() (netip.AddrPort, error) {
	if c.l.Identify != nil {
		return c.l.Identify(c.client)
	}
	return c.client.RemoteAddr().(*net.TCPAddr).AddrPort(), nil
}

func (c *conn) refuse(r *Route, client netip.AddrPort, reason string, err error) {
	if r.Observer != nil {
		r.Observer.Refused(r.Name, reason)
	}
	c.l.log.Warn("connection refused", "listener", r.Name, "client", client, "pool", r.Pool.Name,
		"reason", reason, "error", err)
}

// pick decides the backend for this connection: through the affinity
// table when the pool keeps pins, else straight from the pool. Backends in
// failed refused this connection already.
func (c *conn) pick(r *Route, key affinity.Key, failed []*pool.Backend) (*pool.Backend, affinity.Lease, error) {
	skip := func(b *pool.Backend) bool {
		for _, f := range failed {
			if f == b {
				return true
			}
		}
		return false
	}
	h := key.Hash()
	if r.Table == nil {
		b := r.Pool.Choose(h, skip)
		if b == nil {
			return nil, affinity.Lease{}, fmt.Errorf("pool %s: %w", r.Pool.Name, ErrNoBackend)
		}
		return b, affinity.Lease{}, nil
	}
	var chosen *pool.Backend
	lease, err := r.Table.Acquire(key, func(cur affinity.Current) (string, string, error) {
		reason := ""
		if cur.Backend != "" {
			b := r.Pool.Backend(cur.Backend)
			switch {
			case b == nil:
				reason = "removed"
			case skip(b):
				reason = "refused"
			default:
				ok, why := b.KeepsPinned()
				if ok {
					// Failback: a client with nothing open goes back to
					// the backend it was moved off, once that takes
					// clients again.
					if r.Failback && cur.Home != "" && cur.Active == 0 {
						if home := r.Pool.Backend(cur.Home); home != nil && home.TakesNew() && !skip(home) {
							chosen = home
							return home.Name, affinity.ReasonFailback, nil
						}
					}
					chosen = b
					return cur.Backend, "", nil
				}
				reason = why
			}
			if r.Reject && (reason == "down" || reason == "refused") {
				return "", "", fmt.Errorf("pinned backend %s is %s and on_down is reject", cur.Backend, reason)
			}
		}
		chosen = r.Pool.Choose(h, skip)
		if chosen == nil {
			return "", "", fmt.Errorf("pool %s: %w", r.Pool.Name, ErrNoBackend)
		}
		return chosen.Name, reason, nil
	})
	return chosen, lease, err
}

// Reason names a connect failure for logs and metrics: refused, timeout,
// unreachable, reset, dns or other.
func Reason(err error) string { return dialReason(err) }

// dialReason names a connect failure for logs and metrics.
func dialReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "dns"
	}
	return "other"
}

// halfCopy copies src to dst until src's EOF (see relay), then half-closes
// dst and gives dst's own sender halfClose to finish. On an error both
// sockets are closed so the other direction ends too. open counts the
// directions still copying: when the other one has ended already, both
// sockets are about to be closed, which sends the FIN, so the shutdown(2)
// is skipped.
func halfCopy(dst, src net.Conn, halfClose time.Duration, open *atomic.Int32) (int64, error) {
	n, err := relay(dst, src)
	if err != nil {
		// A reset is passed on as a reset, as the peer sent it: the
		// other side learns at once that the stream broke, and this
		// end keeps no TIME_WAIT for a tuple the client may reuse.
		if errors.Is(err, syscall.ECONNRESET) {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
		}
		dst.Close()
		src.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("half-closed for longer than half_close_timeout (%s): %w", halfClose, err)
		}
		return n, err
	}
	if open.Load() == 1 {
		return n, nil
	}
	if err := closeWrite(dst); err != nil {
		src.Close()
		return n, err
	}
	if halfClose > 0 {
		_ = dst.SetReadDeadline(time.Now().Add(halfClose))
	}
	return n, nil
}

// quiet drops the error a direction sees when the other one closed the
// sockets first: that is the other direction's story, already told.
func quiet(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
