//go:build linux

// Package bench measures any TCP balancer from the client side: it runs
// backends that say who they are, drives short, long-lived or bulk
// connections from many source addresses, and scores speed (connections
// per second, latency percentiles, throughput) and affinity (clients seen
// on more than one backend, balance across backends, how many clients
// move when a backend is removed), without trusting the balancer's own
// counters.
//
// It builds on Linux only: its clients bind with IP_BIND_ADDRESS_NO_PORT.
//
// It is part of the lab and benchmark kit (kit/), which no runtime package
// imports.
package bench

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Backend is a server that greets every connection with its name and a
// newline, then echoes what it receives until the client half-closes.
type Backend struct {
	Name string
	Addr string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartBackend listens on host:port.
func StartBackend(name, host string, port int) (*Backend, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &Backend{Name: name, Addr: addr, ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

func (b *Backend) accept() {
	defer b.wg.Done()
	greeting := []byte(b.Name + "\n")
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			c.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			if _, err := c.Write(greeting); err != nil {
				return
			}
			if _, err := io.Copy(c, c); err == nil {
				c.(*net.TCPConn).CloseWrite()
			}
		}()
	}
}

// Kill stops the backend the way a crash does: the listener closes and
// every connection is reset.
func (b *Backend) Kill() {
	b.mu.Lock()
	b.closed = true
	b.ln.Close()
	for c := range b.conns {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	b.mu.Unlock()
}

// Close kills the backend and waits for its goroutines.
func (b *Backend) Close() {
	b.Kill()
	b.wg.Wait()
}

// StartBackends starts one backend per host, named cas1, cas2, ..., all
// on port. On error it closes those it started.
func StartBackends(hosts []string, port int) ([]*Backend, error) {
	var out []*Backend
	for i, h := range hosts {
		b, err := StartBackend("cas"+strconv.Itoa(i+1), h, port)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
