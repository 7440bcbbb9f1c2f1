//go:build linux

package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/steer"
)

// Sockets are listening sockets a process took over from the one it
// replaces (a binary upgrade): the same kernel sockets, so connections
// waiting in their accept queues during the hand-over are neither
// refused nor lost. Listeners take theirs by address; the rest are
// closed by Close.
type Sockets struct {
	mu    sync.Mutex
	files map[string]*os.File // by bound address, such as "127.0.0.1:135"
	// steering is the sk_lookup link, program and map that steer a range
	// to the socket of an address (steer.Files), by the same key.
	steering map[string][]*os.File
}

// NewSockets wraps files, each a listening TCP socket, by the address
// each is bound to. The parts of a steering (steer.Kind) follow the
// socket they steer to.
func NewSockets(files []*os.File) (*Sockets, error) {
	s := &Sockets{files: map[string]*os.File{}, steering: map[string][]*os.File{}}
	last := ""
	for _, f := range files {
		if steer.Kind(f) != "" {
			if last == "" {
				return nil, fmt.Errorf("inherited %s: it steers to no socket before it", f.Name())
			}
			s.steering[last] = append(s.steering[last], f)
			continue
		}
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("inherited socket %s: %w", f.Name(), err)
		}
		last = sameAddr(ln.Addr().String())
		s.files[last] = f
		ln.Close() // a duplicate: f keeps the socket
	}
	return s, nil
}

// takeSteering returns the steering handed over with the socket of
// addr, or nil; the files are the caller's then.
func (s *Sockets) takeSteering(addr string) []*os.File {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	addr = sameAddr(addr)
	fs := s.steering[addr]
	delete(s.steering, addr)
	return fs
}

// take returns the inherited socket bound to addr as a listener, or nil.
func (s *Sockets) take(addr string) *net.TCPListener {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	addr = sameAddr(addr)
	f := s.files[addr]
	if f == nil {
		return nil
	}
	delete(s.files, addr)
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	return ln.(*net.TCPListener)
}

// sameAddr writes a listening address so that the config's form (":135",
// "0.0.0.0:135") and the kernel's ("[::]:135": Go binds a wildcard
// address dual-stack) of one address compare.
func sameAddr(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	a, err := netip.ParseAddr(host)
	switch {
	case host == "" || err == nil && a.IsUnspecified():
		host = "::"
	case err == nil:
		host = a.Unmap().String()
	}
	return net.JoinHostPort(host, port)
}

// Close closes the sockets no listener took (the config no longer names
// their addresses).
func (s *Sockets) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, f := range s.files {
		f.Close()
		delete(s.files, a)
	}
	for a, fs := range s.steering {
		closeFiles(fs)
		delete(s.steering, a)
	}
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// Listen is Listen, taking the inherited socket of each address where
// there is one and binding the others; a nil Sockets (nothing inherited,
// the usual start) binds them all, so the server has one way to listen.
// A range steered by sk_lookup leaves out the ports leave names (this
// process's admin and cluster ports) and those other sockets listen on.
func (s *Sockets) Listen(ctx context.Context, lc *config.Listener, keepaliveIdle time.Duration, log *slog.Logger, leave ...uint16) (*Listener, error) {
	return listen(ctx, lc, keepaliveIdle, log, s, leave)
}

// Files returns a duplicate of each of the listener's sockets, for a
// process that takes over from this one; for a range steered by
// sk_lookup, the socket and the steering's link, program and map.
func (l *Listener) Files() ([]*os.File, error) {
	var out []*os.File
	for _, ln := range l.lns {
		f, err := ln.File()
		if err != nil {
			for _, f := range out {
				f.Close()
			}
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		out = append(out, f)
	}
	if l.steer != nil {
		fs, err := l.steer.Files()
		if err != nil {
			closeFiles(out)
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		out = append(out, fs...)
	}
	return out, nil
}
