//go:build linux

// Package loop is the kit's real peers on loopback, shared by the tests
// (kit/lbtest), the benchmark (kit/bench) and the lab: a backend host
// that greets every connection with its name and echoes, a dialer bound
// to a client's own source address, and the source addresses of many
// clients (the whole 127.0.0.0/8 is loopback on Linux).
//
// It builds on Linux only: its dialer binds with IP_BIND_ADDRESS_NO_PORT.
package loop

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Backend is a server host listening on any number of ports. Every
// connection is greeted with the backend's name and a newline; everything
// the client sends after that is echoed back, and the client's FIN is
// answered with a FIN once the echo is done.
type Backend struct {
	Name string
	Host string

	mu    sync.Mutex
	lns   map[int]net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewBackend makes a backend named name on host that listens nowhere
// yet (see Listen).
func NewBackend(name, host string) *Backend {
	return &Backend{Name: name, Host: host, lns: map[int]net.Listener{}, conns: map[net.Conn]struct{}{}}
}

// Listen (re)opens the backend on port.
func (b *Backend) Listen(port int) error {
	_, err := b.ListenPort(port)
	return err
}

// ListenPort listens on port (0: any free one) and returns the port.
func (b *Backend) ListenPort(port int) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(b.Host, strconv.Itoa(port)))
	if err != nil {
		return 0, err
	}
	port = ln.Addr().(*net.TCPAddr).Port
	b.serve(port, ln, b.handle)
	return port, nil
}

// serve accepts on ln until it closes, handing each connection to
// handle. Every connection is tracked until handle returns, so Kill and
// Close reach it whatever the port speaks.
func (b *Backend) serve(port int, ln net.Listener, handle func(net.Conn)) {
	b.mu.Lock()
	b.lns[port] = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer b.forget(c)
				handle(c)
			}()
		}
	}()
}

// forget closes c and stops tracking it.
func (b *Backend) forget(c net.Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
	c.Close()
}

// handle greets c with the backend's name and echoes.
func (b *Backend) handle(c net.Conn) {
	if _, err := io.WriteString(c, b.Name+"\n"); err != nil {
		return
	}
	if err := echo(c); err != nil {
		return
	}
	c.(*net.TCPConn).CloseWrite()
	// Wait for the proxy to close its end.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// echo copies c back to itself until EOF. Small messages go through a
// buffer, so an idle connection holds no splice pipe (tests count the
// proxy's descriptors); a read that fills the buffer moves the rest by
// splice, so bulk benchmarks measure the proxy, not this echo.
func echo(c net.Conn) error {
	buf := make([]byte, 4<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n == len(buf) {
			_, err := io.Copy(c, c)
			return err
		}
	}
}

// StopListening closes the backend's listeners: new connections are
// refused, open ones go on.
func (b *Backend) StopListening() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p, ln := range b.lns {
		ln.Close()
		delete(b.lns, p)
	}
}

// Kill stops listening and resets every open connection, like a server
// that crashed.
func (b *Backend) Kill() {
	b.StopListening()
	b.mu.Lock()
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

// StartOn starts one backend per host, named cas1, cas2, ..., all on
// port. On error it closes those it started.
func StartOn(hosts []string, port int) ([]*Backend, error) { return Start(hosts, port, 0) }

// Start starts one backend per host, named cas1, cas2, ..., greeting and
// echoing on port and serving DCE/RPC on rpcPort (0: either not). On
// error it closes those it started.
func Start(hosts []string, port, rpcPort int) ([]*Backend, error) {
	var out []*Backend
	for i, h := range hosts {
		b := NewBackend("cas"+strconv.Itoa(i+1), h)
		out = append(out, b)
		if err := b.listenBoth(port, rpcPort); err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
	}
	return out, nil
}

// listenBoth opens the echo port and the RPC port, those not 0.
func (b *Backend) listenBoth(port, rpcPort int) error {
	if port != 0 {
		if err := b.Listen(port); err != nil {
			return err
		}
	}
	if rpcPort != 0 {
		if _, err := b.ListenRPC(rpcPort); err != nil {
			return err
		}
	}
	return nil
}

// Dialer binds each connection to source address src. With
// IP_BIND_ADDRESS_NO_PORT the kernel picks the source port at connect
// time, knowing the destination, instead of at bind time, where it must
// search past every port in TIME_WAIT from that address: a few addresses
// then do not run out of ports.
func Dialer(src string, timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return serr
		}}
}

// SourceIP returns client i's source address in network 127.net.0.0/16
// and up: 127.net.0.1, 127.net.0.2, ..., avoiding .0 and .255 in the last
// byte. The tests use net 1, the lab 2, the benchmark 10.
func SourceIP(net, i int) string {
	return fmt.Sprintf("127.%d.%d.%d", net+i/(250*250), (i/250)%250, 1+i%250)
}

// FreePort returns a port of 10000-19999 free on host for both TCP and
// UDP now (a cluster member binds both), trying the ports next gives, up
// to tries of them. Below the ephemeral range, so that no port the
// kernel hands out at random takes it between a stop and a restart.
func FreePort(host string, tries int, next func() int) (int, error) {
	for range tries {
		p := 10000 + next()%10000
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no port of 10000-19999 free on %s for both TCP and UDP", host)
}
