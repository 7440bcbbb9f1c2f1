//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/localerr"
	"github.com/stickylb/stickylb/pool"
	"github.com/stickylb/stickylb/steer"
	"github.com/stickylb/stickylb/throttle"
)

// Listener accepts connections on one address.
type Listener struct {
	Name string

	lns   []*net.TCPListener // one, or one per port (see bind)
	steer *steer.Steer       // the sk_lookup program steering ports to lns[0], if any
	ports config.Ports
	leave []uint16 // ports a steered range leaves out: stickylb's own admin and cluster ports
	mode  string   // how the ports are taken: "socket", "sk-lookup" or "per-port"
	route atomic.Pointer[Route]
	log   *slog.Logger
	// localLog lets a line about a failed accept through every few
	// seconds: such faults come in floods. failLogs does the same for
	// each backend's failed connects, refuseLogs for each kind of
	// refusal.
	localLog   throttle.Log
	failLogs   sync.Map // backend name -> *throttle.Log; names are few, objects come and go with reloads
	refuseLogs sync.Map // Refusal -> *throttle.Log

	// inherited are sockets of the process this one took over from, if
	// any: bind takes them before binding anew.
	inherited *Sockets

	// keepalive is the TCP keepalive idle time set on its sockets;
	// pinholes are the ports it learned from the endpoint mapper, when
	// its route has InspectDCERPC.
	keepalive time.Duration
	pinholes  *Pinholes

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup // the connections in conns
	// accepting counts the Serve calls whose accept loops run: a
	// connection accepted in the instant of Close is added to wg after
	// Close returns, so a Wait after Close waits for the loops first.
	accepting sync.WaitGroup
	accepted  atomic.Uint64

	// setup hands accepted connections to idle set-up workers; closed
	// ends the workers when the listener closes.
	setup     chan *conn
	closed    chan struct{}
	closeOnce sync.Once
}

// Listen opens a listener where lc says, on the address and ports
// config parsed ("10.0.0.50:6005-59530" takes a range), in lc's range
// mode. The error says which port could not be bound and what to do
// about it.
func Listen(ctx context.Context, lc *config.Listener, keepaliveIdle time.Duration, log *slog.Logger) (*Listener, error) {
	return listen(ctx, lc, keepaliveIdle, log, nil, nil)
}

func listen(ctx context.Context, lc *config.Listener, keepaliveIdle time.Duration, log *slog.Logger, inherited *Sockets, leave []uint16) (*Listener, error) {
	host, ports := lc.ListenAddr()
	// Keepalive is set once on the listening socket: Linux copies it to
	// every accepted socket, which saves four setsockopt calls per
	// connection over letting Go set it on each.
	control := func(_, _ string, c syscall.RawConn) error { return setKeepalive(c, keepaliveIdle) }
	l := &Listener{Name: lc.Name, log: log, ports: ports, conns: map[*conn]struct{}{},
		setup: make(chan *conn), closed: make(chan struct{}), inherited: inherited, leave: leave, keepalive: keepaliveIdle}
	l.pinholes = newPinholes(l, host)
	if err := l.bind(ctx, host, lc.RangeMode, control); err != nil {
		return nil, err
	}
	return l, nil
}

func listenError(name, addr string, err error) error {
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listener %s: port %s on %s is already in use by another process (find it with `ss -ltnp 'sport = :%s'`, or change listener.%s.listen): %w", name, port, addr, port, name, err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("listener %s: binding port %s needs root or CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the binary), or use a port above 1023: %w", name, port, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listener %s: %s is not an address of this machine: %w", name, addr, err)
	}
	return fmt.Errorf("listener %s: listen on %s: %w", name, addr, err)
}

// Addr returns the bound address of the first port (useful when the
// config said port 0).
func (l *Listener) Addr() netip.AddrPort { return l.lns[0].Addr().(*net.TCPAddr).AddrPort() }

// Ports returns the ports the listener takes, and how: "socket" (one
// port), "sk-lookup" or "per-port".
func (l *Listener) Ports() (config.Ports, string) { return l.ports, l.mode }

// SetRoute installs the route new connections follow.
func (l *Listener) SetRoute(r *Route) {
	l.route.Store(r)
	l.pinholes.setRoute(r)
}

// Pinholes returns the ports the listener learned from the endpoint
// mapper's answers (Route.InspectDCERPC).
func (l *Listener) Pinholes() *Pinholes { return l.pinholes }

// Route returns the current route.
func (l *Listener) Route() *Route { return l.route.Load() }

// Serve accepts on every socket of the listener until Close. It returns
// nil after Close.
func (l *Listener) Serve() error {
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		return nil
	default:
	}
	l.accepting.Add(1)
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range l.lns[1:] {
		wg.Go(func() { l.accept(ln) })
	}
	l.accept(l.lns[0])
	wg.Wait()
	l.accepting.Done()
	l.pinholes.wg.Wait() // closed with the listener
	return nil
}

// accept takes connections from one socket until it is closed.
func (l *Listener) accept(ln *net.TCPListener) {
	var backoff time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like pass; back off
			// instead of spinning, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.acceptFailed(err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		cn := &conn{l: l, client: c, start: time.Now(), id: l.accepted.Add(1)}
		l.mu.Lock()
		l.conns[cn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		select {
		case l.setup <- cn:
		default:
			go l.worker(cn)
		}
		// Let the worker dial before this loop's next accept, which on
		// one processor would otherwise run first, return EAGAIN and
		// park, all before the backend's SYN is sent.
		runtime.Gosched()
	}
}

// acceptFailed counts and logs (at most every few seconds) a failed
// accept: nearly always this host out of file descriptors.
func (l *Listener) acceptFailed(err error, backoff time.Duration) {
	errno := localerr.Name(err)
	if errno == "" {
		errno = "other"
	}
	if r := l.route.Load(); r != nil && r.Observer.LocalError != nil {
		r.Observer.LocalError(l.Name, "accept", errno)
	}
	l.localLog.Do(func(n int) {
		l.log.Error("accept failed; retrying: raise the file limit (LimitNOFILE) if this is EMFILE", "listener", l.Name,
			"errno", errno, "error", err, "retry_in", backoff, "count", n, "note", l.localLog.Note())
	})
}

// failLog is the throttle of b's connect-failure log lines.
func (l *Listener) failLog(b *pool.Backend) *throttle.Log { return throttleOf(&l.failLogs, b.Name) }

// refuseLog is the throttle of the log lines of refusals of one kind.
func (l *Listener) refuseLog(why Refusal) *throttle.Log { return throttleOf(&l.refuseLogs, why) }

func throttleOf[K comparable](m *sync.Map, k K) *throttle.Log {
	if v, ok := m.Load(k); ok {
		return v.(*throttle.Log)
	}
	v, _ := m.LoadOrStore(k, &throttle.Log{})
	return v.(*throttle.Log)
}

// workerIdle is how long a set-up worker waits for another connection
// before it ends: between one and two of these.
const workerIdle = 10 * time.Second

// worker sets connections up (identify, pick, dial) one after another.
// It is kept between connections because the dial grows a goroutine's
// stack to about 8 KiB: a fresh goroutine per connection copied its stack
// up to that size every time, a fifth of the proxy's user time at 12k
// connections per second. The copy directions still start on fresh
// goroutines, so an idle connection keeps a small stack. The idle timer
// is re-armed once per period, not once per connection.
func (l *Listener) worker(c *conn) {
	idle := time.NewTicker(workerIdle)
	defer idle.Stop()
	for {
		c.serve()
		busy := true
		for c = nil; c == nil; {
			select {
			case c = <-l.setup:
			case <-idle.C:
				if !busy {
					return
				}
				busy = false
			case <-l.closed:
				return
			}
		}
	}
}

// Close stops accepting. Open connections go on.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	l.pinholes.close()
	var errs []error
	if l.steer != nil {
		errs = append(errs, l.steer.Close())
	}
	for _, ln := range l.lns {
		errs = append(errs, ln.Close())
	}
	return errors.Join(errs...)
}

// Accepted returns how many connections the listener has accepted.
func (l *Listener) Accepted() uint64 { return l.accepted.Load() }

// Active returns the number of open client connections.
func (l *Listener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Wait waits for open connections to end. When ctx ends first it closes
// them, waits for their goroutines, and returns how many it cut.
func (l *Listener) Wait(ctx context.Context) int {
	n := 0
	for _, pl := range l.pinholes.listeners() {
		n += pl.Wait(ctx)
	}
	return n + l.wait(ctx)
}

func (l *Listener) wait(ctx context.Context) int {
	done := make(chan struct{})
	go func() {
		select {
		case <-l.closed:
			// Serve's Add, under l.mu, came before this or saw closed.
			l.mu.Lock()
			l.mu.Unlock()
			l.accepting.Wait()
		default:
		}
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-ctx.Done():
	}
	l.mu.Lock()
	n := 0
	for c := range l.conns {
		if c.abort(EndCutShutdown) {
			n++
		}
	}
	l.mu.Unlock()
	<-done
	return n
}

// CloseBackend closes every connection of this listener to b, for the
// reason given, and returns how many it closed.
func (l *Listener) CloseBackend(b *pool.Backend, why Termination) int {
	n := 0
	for _, pl := range l.pinholes.listeners() {
		n += pl.CloseBackend(b, why)
	}
	return n + l.closeBackend(b, why)
}

func (l *Listener) closeBackend(b *pool.Backend, why Termination) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := range l.conns {
		if c.openOn() == b && c.abort(why) {
			n++
		}
	}
	return n
}

func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.wg.Done()
}
