//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// prologue writes what the backend must get before the client's stream:
// a PROXY header when the route sends one, then any bytes the client sent
// behind its own PROXY header. Both are written before the copy starts,
// so the copy itself stays on the plain sockets (and splice).
func (c *conn) prologue(o Origin) error {
	var out []byte
	if c.r.SendProxy != 0 {
		h, err := proxyHeader(c.r.SendProxy, o)
		if err != nil {
			return fmt.Errorf("PROXY header for %s: %w", o.Client, err)
		}
		out = h
	}
	out = append(out, o.Early...)
	if c.rpc != nil && len(o.Early) > 0 {
		c.rpcFromClient(o.Early) // the client's first bytes came behind its PROXY header
	}
	if len(out) == 0 {
		return nil
	}
	c.backend.SetWriteDeadline(time.Now().Add(c.r.connectTimeout()))
	defer c.backend.SetWriteDeadline(time.Time{})
	if _, err := c.backend.Write(out); err != nil {
		return fmt.Errorf("backend %s: write PROXY header and early bytes: %w", c.b.Name, err)
	}
	c.toBackend = int64(len(o.Early))
	c.b.AddToBackend(c.toBackend)
	return nil
}

// clientToBackend and backendToClient are the two directions, named so a
// goroutine dump says which one is stuck. A direction stopped by a pause
// (move.go) waits for its verdict: it ends without ending the connection
// when the connection moved, else copies on.
func (c *conn) clientToBackend(cp copier) {
	for {
		n, err := halfCopy(cp, c.backend, c.client, c.r.HalfCloseTimeout, &c.open, c.b.AddToBackend, c,
			func(err error) { c.noteEnd(true, err) })
		c.toBackend += n
		if err != errPaused {
			c.backendErr = err
			break
		}
		if c.parked() {
			return
		}
	}
	c.directionEnded()
}

func (c *conn) backendToClient(cp copier) {
	for {
		n, err := halfCopy(cp, c.client, c.backend, c.r.HalfCloseTimeout, &c.open, c.b.AddToClient, c,
			func(err error) { c.noteEnd(false, err) })
		c.toClient += n
		if err != errPaused {
			c.clientErr = err
			break
		}
		if c.parked() {
			return
		}
	}
	c.directionEnded()
}

// directionEnded runs when a direction has ended; the last one finishes
// the connection. The atomic decrement orders the other direction's
// results before finish reads them.
func (c *conn) directionEnded() {
	if c.open.Add(-1) == 0 {
		c.finish()
	}
}

// noteEnd records how a direction ended. The first to end tells how the
// connection ended (unless it was cut), except that a half-close that
// then outlives half_close_timeout ended by that timeout. A direction
// that ends because the other closed both sockets sees net.ErrClosed and
// tells nothing.
func (c *conn) noteEnd(fromClient bool, err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	end := directionEnd(fromClient, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended == "" || end == EndHalfCloseTimeout {
		c.ended = end
	}
}

// log writes the closing line of a connection that reached its
// backend: how it ended, and what an operator needs to find it in the
// CAS's own logs (the backend's address and the local port of its leg).
func (c *conn) log(e Ending) {
	placement := "none"
	if c.r.Table != nil {
		placement = c.lease.Placement.String()
	}
	attrs := []slog.Attr{
		slog.String("listener", c.r.Name),
		slog.String("client", c.from.String()),
		slog.String("backend", c.b.Name),
		slog.String("placement", placement),
		slog.String("termination", string(e.Termination)),
		slog.Int64("bytes_to_backend", c.toBackend),
		slog.Int64("bytes_to_client", c.toClient),
		slog.Float64("duration_ms", ms(e.Duration)),
		slog.Float64("connect_ms", ms(c.connectTime)),
		slog.Int("retries", c.attempts-1),
		slog.String("backend_addr", c.addr),
		slog.Int("backend_local_port", localPort(c.backend)),
		slog.Int("listener_conns", c.l.Active()),
	}
	if c.lease.Repin != "" {
		attrs = append(attrs, slog.String("repin_reason", string(c.lease.Repin)))
	}
	if c.rpc != nil {
		attrs = append(attrs, c.rpcAttrs()...)
	}
	if err := errors.Join(quiet(c.backendErr), quiet(c.clientErr)); err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.l.log.LogAttrs(context.Background(), slog.LevelInfo, "connection closed", attrs...)
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
