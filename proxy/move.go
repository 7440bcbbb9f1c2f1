//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// A connection moves to a new process at an upgrade (issue 34): both of
// its directions stop at a safe point, its two sockets and what it is
// go to the new process, and the copy goes on there. The safe point is
// the read at the top of each direction's loop: a read deadline in the
// past makes it return at once, after the write before it has written
// everything it read, so no byte is held in this process, in a buffer
// or in splice's pipe (Go's splice pumps all it drained before it
// reads again). A direction that is writing to a peer that does not read
// keeps the connection here, once the pause's wait is over.
//
// A half-closed connection (one side has sent its FIN, and the stream
// the other way goes on) moves too: its one open direction pauses, and
// the new process copies that direction on, with the half-close's
// deadline it was given here. The FIN already sent is the socket's
// state, which the descriptors carry. Connections still setting up stay
// here and drain, as do connections to a followed endpoint mapper and
// those on the ports it handed out (pinhole.go: the learned ports are
// not handed over).

// Moved is what a connection is, as one process tells the next.
type Moved struct {
	ID        uint64         `json:"id"`
	Listener  string         `json:"listener"`
	Client    netip.AddrPort `json:"client"`  // as identified (PROXY header or socket)
	Backend   string         `json:"backend"` // the backend's name in its pool
	Addr      string         `json:"addr"`    // the address dialled
	Start     time.Time      `json:"start"`
	ToBackend int64          `json:"to_backend"`
	ToClient  int64          `json:"to_client"`
	// HalfClosed names the side that sent its FIN, for a half-closed
	// connection, and HalfCloseUntil the end of the other direction's
	// half_close_timeout (zero for none).
	HalfClosed     HalfClosed `json:"half_closed,omitempty"`
	HalfCloseUntil time.Time  `json:"half_close_until,omitzero"`
}

// HalfClosed is the side of a connection that has sent its FIN first.
type HalfClosed string

const (
	ClientSentFIN  HalfClosed = "client"
	BackendSentFIN HalfClosed = "backend"
)

// errPaused ends a direction's copy at a pause.
var errPaused = errors.New("paused for a hand-over")

// Parcel is a paused connection: what it is and duplicates of its two
// sockets, for the new process. Exactly one of Gone and Stay must be
// called.
type Parcel struct {
	Moved
	ClientFile, BackendFile *os.File
	c                       *conn
}

// pause stops both directions of c at their safe points, waiting at
// most until deadline; it says whether both stopped. When they did not,
// c goes on copying here.
func (c *conn) pause(deadline time.Time) bool {
	c.mu.Lock()
	// Both directions copying, or one after a clean half-close: a
	// direction that ended in an error closed both sockets. A
	// connection to the endpoint mapper that is followed stays: what its
	// watch has read cannot move, and such a connection is short.
	// A direction that has just half-closed may not have counted its
	// end yet (open is still 2): such a connection stays, as the new
	// process would read its counts while that direction writes them.
	want := int32(2)
	if c.half != "" {
		want = 1
	}
	ok := c.opened && c.cut == "" && !c.told && c.open.Load() == want && !c.r.InspectDCERPC
	if ok {
		c.pausing, c.parks, c.verdict = true, make(chan struct{}, 2), make(chan bool, 2)
		now := time.Now()
		c.client.SetReadDeadline(now)
		c.backend.SetReadDeadline(now)
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for parked := int32(0); parked < want; parked++ {
		select {
		case <-c.parks:
		case <-t.C:
			c.resume()
			return false
		}
	}
	return true
}

// parked is a direction stopped by a pause: it waits for the verdict
// and says whether the connection moved (the direction then ends
// without ending the connection) or goes on here.
func (c *conn) parked() bool {
	c.mu.Lock()
	if !c.pausing {
		c.mu.Unlock()
		return false // the pause is over: copy on
	}
	c.parkedDirs++
	v := c.verdict
	c.mu.Unlock()
	c.parks <- struct{}{}
	return <-v
}

// resume ends a pause that does not move c: the deadlines are what they
// were before it (a half-close's, or none).
func (c *conn) resume() {
	c.mu.Lock()
	c.client.SetReadDeadline(c.halfDeadline(BackendSentFIN))
	c.backend.SetReadDeadline(c.halfDeadline(ClientSentFIN))
	c.pausing = false
	n := c.parkedDirs
	c.parkedDirs = 0
	c.mu.Unlock()
	for range n {
		c.verdict <- false
	}
}

// pauser tells a pause's deadline from a connection's own, and keeps
// the latter (halfCopy).
type pauser interface {
	isPause(error) bool
	halfClosed(dst net.Conn, timeout time.Duration)
}

// isPause says whether err is a pause's deadline rather than the
// connection's own: during a pause, or after one that ended between the
// read's deadline and this look, which a half-close's deadline that has
// not passed tells (a connection has no other read deadline). The
// direction then asks parked, which says to copy on if the pause is
// over.
func (c *conn) isPause(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pausing || c.halfUntil.IsZero() || time.Now().Before(c.halfUntil)
}

// halfClosed notes that the side dst leads to was sent a FIN, and gives
// the direction reading dst its half_close_timeout; a pause under way
// keeps its own deadline and restores this one if it does not move c.
func (c *conn) halfClosed(dst net.Conn, timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.half = BackendSentFIN
	if dst == c.backend {
		c.half = ClientSentFIN
	}
	if timeout > 0 {
		c.halfUntil = time.Now().Add(timeout)
	}
	if !c.pausing {
		dst.SetReadDeadline(c.halfUntil)
	}
}

// halfDeadline is the read deadline of the socket the side that did not
// send its FIN reads from (the other's is none): the half-close's, once
// side has sent its FIN. c.mu is held.
func (c *conn) halfDeadline(side HalfClosed) time.Time {
	if c.half == side {
		return c.halfUntil
	}
	return time.Time{}
}

// Pause stops the listener's open connections at their safe points,
// waiting until deadline at most, and returns those that stopped, for a
// new process. The rest go on here.
func (l *Listener) Pause(deadline time.Time) []*Parcel {
	l.mu.Lock()
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	var mu sync.Mutex
	var out []*Parcel
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			p, err := c.parcel(deadline)
			if p == nil {
				if err != nil {
					l.log.Warn("connection kept in this process at the hand-over", "listener", l.Name, "id", c.id, "error", err)
				}
				return
			}
			mu.Lock()
			out = append(out, p)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// parcel pauses c and wraps it for the new process; nil when it does
// not move.
func (c *conn) parcel(deadline time.Time) (*Parcel, error) {
	if !c.pause(deadline) {
		return nil, nil
	}
	cf, err := c.client.File()
	if err != nil {
		c.resume()
		return nil, fmt.Errorf("client socket: %w", err)
	}
	bf, err := c.backend.(*net.TCPConn).File()
	if err != nil {
		cf.Close()
		c.resume()
		return nil, fmt.Errorf("backend socket: %w", err)
	}
	c.mu.Lock()
	m := Moved{ID: c.id, Listener: c.l.Name, Client: c.from, Backend: c.b.Name, Addr: c.addr, Start: c.start,
		ToBackend: c.toBackend, ToClient: c.toClient, HalfClosed: c.half, HalfCloseUntil: c.halfUntil}
	c.mu.Unlock()
	return &Parcel{Moved: m, ClientFile: cf, BackendFile: bf, c: c}, nil
}

// Gone lets go of a connection the new process took: this process
// closes its sockets (the new one's keep them open), releases its pin's
// lease and logs the move, not an end.
func (p *Parcel) Gone() {
	c := p.c
	c.mu.Lock()
	c.told = true // too late to cut: it is the new process's
	c.mu.Unlock()
	c.verdict <- true
	c.verdict <- true
	p.ClientFile.Close()
	p.BackendFile.Close()
	c.b.ConnClosed()
	if f := c.r.Observer.Moved; f != nil {
		f(c.r.Name, c.b, false)
	}
	c.l.log.Debug("connection handed to the new process", "listener", c.l.Name, "id", c.id, "client", c.from.String(),
		"backend", c.b.Name, "bytes_to_backend", p.ToBackend, "bytes_to_client", p.ToClient)
	c.release()
}

// Stay takes a paused connection back: it copies on here.
func (p *Parcel) Stay() {
	p.ClientFile.Close()
	p.BackendFile.Close()
	p.c.resume()
}

// adopt takes a connection a process handed to this one, on its
// sockets, into the listener; start copies, drop lets go of it.
func (l *Listener) adopt(m Moved, client, backend *os.File) (*conn, error) {
	defer client.Close()
	defer backend.Close()
	r := l.route.Load()
	b := r.Pool.Backend(m.Backend)
	if b == nil {
		return nil, fmt.Errorf("connection %s/%d: backend %s is not in its pool any more", m.Listener, m.ID, m.Backend)
	}
	cc, err := net.FileConn(client)
	if err != nil {
		return nil, fmt.Errorf("connection %s/%d: client socket: %w", m.Listener, m.ID, err)
	}
	bc, err := net.FileConn(backend)
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("connection %s/%d: backend socket: %w", m.Listener, m.ID, err)
	}
	c := &conn{l: l, r: r, client: cc.(*net.TCPConn), id: m.ID, start: m.Start, from: m.Client, backend: bc, b: b,
		addr: m.Addr, attempts: 1, toBackend: m.ToBackend, toClient: m.ToClient, opened: true,
		half: m.HalfClosed, halfUntil: m.HalfCloseUntil}
	if r.Table != nil {
		c.lease, _ = r.Table.Acquire(r.Keyer.Key(m.Client), func(affinity.Current) (string, affinity.RepinReason, error) {
			return b.Name, affinity.RepinReason("moved"), nil
		})
	}
	if r.Limits != nil {
		c.admitted = r.Limits.admit(m.Client.Addr()) == ""
	}
	l.countFrom(m.ID)
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	return c, nil
}

// start copies on an adopted connection.
func (c *conn) startAdopted() {
	r := c.r
	c.b.ConnOpened()
	if f := r.Observer.Moved; f != nil {
		f(r.Name, c.b, true)
	}
	if r.IdleTimeout > 0 {
		c.stopIdle = watchIdle(c.client, c.backend, r.IdleTimeout, func() { c.abort(EndIdleTimeout) })
	}
	toBackend, toClient := c.copiers()
	switch c.half {
	case ClientSentFIN: // the stream to the client goes on
		c.ended = EndClientClosed
		c.backend.SetReadDeadline(c.halfUntil)
		c.open.Store(1)
		go c.backendToClient(toClient)
	case BackendSentFIN:
		c.ended = EndBackendClosed
		c.client.SetReadDeadline(c.halfUntil)
		c.open.Store(1)
		go c.clientToBackend(toBackend)
	default:
		c.open.Store(2)
		go c.clientToBackend(toBackend)
		go c.backendToClient(toClient)
	}
}

// dropAdopted lets go of an adopted connection the old process kept:
// closing this process's sockets sends nothing, as the old one's stay
// open.
func (c *conn) dropAdopted() {
	c.mu.Lock()
	c.told = true
	c.mu.Unlock()
	c.release()
}

// countFrom makes the listener's next connection id come after id.
func (l *Listener) countFrom(id uint64) {
	for {
		cur := l.accepted.Load()
		if cur >= id || l.accepted.CompareAndSwap(cur, id) {
			return
		}
	}
}
