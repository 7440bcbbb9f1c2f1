//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/pool"
)

// session is a connection once its backend leg is open: what the two
// copy directions share and the last of them reports.
type session struct {
	c      *conn
	r      *Route
	b      *pool.Backend
	be     net.Conn
	lease  affinity.Lease
	client netip.AddrPort

	addr        string        // the backend's address
	attempts    int           // connects it took
	connectTime time.Duration // from the first connect to the one that held

	stopIdle              func()
	open                  atomic.Int32 // directions still copying
	endMu                 sync.Mutex
	ended                 Termination // how it ended, as the directions tell; see noteEnd
	toBackend, toClient   int64       // bytes copied each way
	backendErr, clientErr error       // how the copy to each ended
}

// prologue writes what the backend must get before the client's stream:
// a PROXY header when the route sends one, then any bytes the client sent
// behind its own PROXY header. Both are written before the copy starts,
// so the copy itself stays on the plain sockets (and splice).
func (s *session) prologue(o Origin) error {
	var out []byte
	if s.r.SendProxy != 0 {
		h, err := proxyHeader(s.r.SendProxy, o)
		if err != nil {
			return fmt.Errorf("PROXY header for %s: %w", o.Client, err)
		}
		out = h
	}
	out = append(out, o.Early...)
	if len(out) == 0 {
		return nil
	}
	s.be.SetWriteDeadline(time.Now().Add(s.r.connectTimeout()))
	defer s.be.SetWriteDeadline(time.Time{})
	if _, err := s.be.Write(out); err != nil {
		return fmt.Errorf("backend %s: write PROXY header and early bytes: %w", s.b.Name, err)
	}
	s.toBackend = int64(len(o.Early))
	s.b.AddToBackend(s.toBackend)
	return nil
}

// clientToBackend and backendToClient are the two directions, named so a
// goroutine dump says which one is stuck.
func (s *session) clientToBackend() {
	var n int64
	n, s.backendErr = halfCopy(s.be, s.c.client, s.r.HalfCloseTimeout, &s.open, s.b.AddToBackend,
		func(err error) { s.noteEnd(true, err) })
	s.toBackend += n
	s.end()
}

func (s *session) backendToClient() {
	s.toClient, s.clientErr = halfCopy(s.c.client, s.be, s.r.HalfCloseTimeout, &s.open, s.b.AddToClient,
		func(err error) { s.noteEnd(false, err) })
	s.end()
}

// noteEnd records how a direction ended. The first to end tells how the
// connection ended (unless it was cut), except that a half-close that
// then outlives half_close_timeout ended by that timeout. A direction
// that ends because the other closed both sockets sees net.ErrClosed and
// tells nothing.
func (s *session) noteEnd(fromClient bool, err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	end := directionEnd(fromClient, err)
	s.endMu.Lock()
	defer s.endMu.Unlock()
	if s.ended == "" || end == EndHalfCloseTimeout {
		s.ended = end
	}
}

// termination is how the connection ended; called once both directions
// have.
func (s *session) termination() Termination {
	s.c.mu.Lock()
	cut := s.c.cut
	s.c.mu.Unlock()
	s.endMu.Lock()
	defer s.endMu.Unlock()
	switch {
	case cut != "":
		return cut
	case s.ended != "":
		return s.ended
	}
	return EndClientClosed
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
	if r.Limits != nil {
		defer r.Limits.done(s.client.Addr())
	}
	if s.stopIdle != nil {
		s.stopIdle()
	}
	b.ConnClosed()
	d, end := time.Since(c.start), s.termination()
	if r.Observer != nil {
		r.Observer.Closed(r.Name, b, s.toBackend, s.toClient, d)
		r.Observer.Ended(r.Name, end)
	}
	if c.l.log.Enabled(context.Background(), slog.LevelInfo) {
		s.log(d, end)
	}
}

// log writes the connection's closing line: how it ended, and what an
// operator needs to find it in the CAS's own logs (the backend's address
// and the local port of its leg).
func (s *session) log(d time.Duration, end Termination) {
	decision := "none"
	if s.r.Table != nil {
		decision = s.lease.Decision.String()
	}
	attrs := []slog.Attr{
		slog.String("listener", s.r.Name),
		slog.String("client", s.client.String()),
		slog.String("backend", s.b.Name),
		slog.String("decision", decision),
		slog.String("termination", string(end)),
		slog.Int64("bytes_to_backend", s.toBackend),
		slog.Int64("bytes_to_client", s.toClient),
		slog.Float64("duration_ms", ms(d)),
		slog.Float64("connect_ms", ms(s.connectTime)),
		slog.Int("retries", s.attempts-1),
		slog.String("backend_addr", s.addr),
		slog.Int("backend_local_port", localPort(s.be)),
		slog.Int("listener_conns", s.c.l.Active()),
	}
	if s.lease.Repin != "" {
		attrs = append(attrs, slog.String("repin_reason", string(s.lease.Repin)))
	}
	if err := errors.Join(quiet(s.backendErr), quiet(s.clientErr)); err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	s.c.l.log.LogAttrs(context.Background(), slog.LevelInfo, "connection closed", attrs...)
}

// ms is a duration in milliseconds, rounded to the microsecond: JSON logs
// carry the unit in the key rather than bare nanoseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func localPort(c net.Conn) int {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}
