//go:build linux

package admin

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// MaxConns bounds the connections one admin listener serves at once: a
// thousand idle ones would otherwise take the file descriptors the proxy
// needs.
const MaxConns = 64

// Endpoint is the API served on one listener: the TCP address or the
// Unix socket.
type Endpoint struct {
	srv *http.Server
	ln  *limitListener
}

// Serve answers the API on ln, over TLS with tlsConf when it is not nil,
// until Close. At most MaxConns connections are open at once; when they
// all are, the next one closes the oldest that is not being answered
// (it has sent no whole request yet, or waits between requests), so
// connections held open cannot keep keepalived's /readyz out. Only when
// every one is being answered does the next wait in the listen queue.
func (a *API) Serve(ln net.Listener, tlsConf *tls.Config) *Endpoint {
	ll := newLimitListener(ln, MaxConns)
	e := &Endpoint{ln: ll}
	e.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ll.answering(r); a.ServeHTTP(w, r) }),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		ConnState:   ll.state,
	}
	var l net.Listener = ll
	if tlsConf != nil {
		l = tls.NewListener(ll, tlsConf)
	}
	go e.srv.Serve(l)
	return e
}

// Close stops serving: the listener and every connection are closed.
func (e *Endpoint) Close() error { return e.srv.Close() }

type connKey struct{}

// limitListener is a listener of at most max open connections that,
// when full, makes room by closing the oldest connection not being
// answered.
type limitListener struct {
	net.Listener
	max int

	mu     sync.Mutex
	free   *sync.Cond // a connection closed or stopped being answered
	open   []*limitConn
	closed bool
}

// limitConn is one connection of a limitListener.
type limitConn struct {
	net.Conn
	l    *limitListener
	busy bool // a handler is answering it (under l.mu)
	once sync.Once
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	l := &limitListener{Listener: ln, max: max}
	l.free = sync.NewCond(&l.mu)
	return l
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitConn{Conn: c, l: l}
	l.mu.Lock()
	for len(l.open) >= l.max && !l.closed {
		i := slices.IndexFunc(l.open, func(c *limitConn) bool { return !c.busy })
		if i < 0 {
			l.free.Wait()
			continue
		}
		idle := l.open[i]
		l.open = slices.Delete(l.open, i, i+1)
		l.mu.Unlock()
		idle.Conn.Close() // the server sees the read fail and lets it go
		l.mu.Lock()
	}
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.open = append(l.open, lc)
	l.mu.Unlock()
	return lc, nil
}

func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.free.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// answering marks r's connection as being answered, until its state
// goes back to idle: a response is never cut to make room.
func (l *limitListener) answering(r *http.Request) {
	if c := connOf(r.Context().Value(connKey{})); c != nil {
		l.mu.Lock()
		c.busy = true
		l.mu.Unlock()
	}
}

// state follows the server's view of a connection: idle between
// requests, or gone.
func (l *limitListener) state(nc net.Conn, s http.ConnState) {
	if c := connOf(nc); c != nil && (s == http.StateIdle || s == http.StateClosed || s == http.StateHijacked) {
		l.mu.Lock()
		c.busy = false
		l.free.Signal()
		l.mu.Unlock()
	}
}

// connOf is the limitConn under v, a connection the server serves (a
// TLS one wraps it); nil if it is none.
func connOf(v any) *limitConn {
	if t, ok := v.(*tls.Conn); ok {
		v = t.NetConn()
	}
	c, _ := v.(*limitConn)
	return c
}

func (c *limitConn) Close() error {
	c.once.Do(func() {
		l := c.l
		l.mu.Lock()
		if i := slices.Index(l.open, c); i >= 0 {
			l.open = slices.Delete(l.open, i, i+1)
		}
		l.free.Signal()
		l.mu.Unlock()
	})
	return c.Conn.Close()
}
