//go:build linux

package lbtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// HalfServer is a backend for half-closed streams, the two ways a TCP
// connection goes on after one side's FIN. It greets each connection
// with its name, as the echo backends do, then reads the mode the client
// sends: ClientFINs and the client half-closes, and the server streams
// the pattern to it until Finish; BackendFINs and the server
// half-closes at once, then reads and checks the client's pattern until
// the client's FIN.
type HalfServer struct {
	Name string
	ln   net.Listener
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	got  int64 // pattern bytes checked from clients
	errs []error
}

// The modes of a half-closed stream: who sends the FIN first.
const (
	ClientFINs  = 'c'
	BackendFINs = 'b'
)

// StartHalfServer listens on host:port (0 picks one) until the test
// ends.
func StartHalfServer(t testing.TB, name, host string, port int) *HalfServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("half-close backend %s on %s:%d: %v", name, host, port, err)
	}
	s := &HalfServer{Name: name, ln: ln, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

// Port is the port it listens on.
func (s *HalfServer) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *HalfServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			if err := s.handle(c.(*net.TCPConn)); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
			}
		}()
	}
}

func (s *HalfServer) handle(c *net.TCPConn) error {
	c.SetDeadline(time.Now().Add(10 * time.Minute)) // a stream may last a whole test under -race
	// A connection that ends before it names a mode is a health check's
	// (or a port probe's): not a failure.
	mode := make([]byte, 1)
	if _, err := c.Write([]byte(s.Name + "\n")); err != nil {
		return nil
	}
	if _, err := io.ReadFull(c, mode); err != nil {
		return nil
	}
	switch mode[0] {
	case ClientFINs:
		if _, err := io.Copy(io.Discard, c); err != nil {
			return fmt.Errorf("reading to the client's FIN: %w", err)
		}
		return s.stream(c)
	case BackendFINs:
		c.CloseWrite()
		n, err := checkPattern(c, nil)
		s.mu.Lock()
		s.got += n
		s.mu.Unlock()
		return err
	}
	return fmt.Errorf("mode %q", mode)
}

// stream sends the pattern to a half-closed client until Finish.
func (s *HalfServer) stream(c *net.TCPConn) error {
	if err := writePattern(c, s.stop, 512, 2*time.Millisecond, nil); err != nil {
		return fmt.Errorf("streaming to a half-closed client: %w", err)
	}
	return nil
}

// Finish ends the streams to half-closed clients: the server closes
// them.
func (s *HalfServer) Finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
}

// Checked is how many pattern bytes the server has read from clients
// that it half-closed, and the first thing that went wrong serving any
// connection.
func (s *HalfServer) Checked() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got, errors.Join(s.errs...)
}

func (s *HalfServer) close() {
	s.Finish()
	s.ln.Close()
	s.wg.Wait()
}

// checkPattern reads r to EOF, checking the pattern, and notes each
// wait for bytes in wait (if not nil); it returns the bytes read.
func checkPattern(r io.Reader, wait func(time.Duration)) (int64, error) {
	buf := make([]byte, 16<<10)
	last := time.Now()
	for off := int64(0); ; {
		n, err := r.Read(buf)
		if n > 0 && wait != nil {
			now := time.Now()
			wait(now.Sub(last))
			last = now
		}
		for i := range n {
			if buf[i] != streamByte(off) {
				return off, fmt.Errorf("byte %d came as %#x, want %#x", off, buf[i], streamByte(off))
			}
			off++
		}
		switch {
		case errors.Is(err, io.EOF):
			return off, nil
		case err != nil:
			return off, fmt.Errorf("read at %d: %w", off, err)
		}
	}
}

// HalfStream is one half-closed stream, seen from its client (a
// connection to a HalfServer, through the proxy).
type HalfStream struct {
	c    *Client
	mode byte
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	n       int64 // bytes checked (ClientFINs) or sent (BackendFINs)
	maxWait time.Duration
	err     error
}

// StartHalfStream half-closes c the way mode says and keeps its one
// open direction going; it returns once the FIN has been sent (for
// BackendFINs, once the client has read it).
func StartHalfStream(c *Client, mode byte) (*HalfStream, error) {
	h := &HalfStream{c: c, mode: mode, stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := c.Write([]byte{mode}); err != nil {
		return nil, fmt.Errorf("mode: %w", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Minute))
	if mode == ClientFINs {
		if err := c.CloseWrite(); err != nil {
			return nil, fmt.Errorf("client FIN: %w", err)
		}
		go h.read()
		return h, nil
	}
	if _, err := io.Copy(io.Discard, c.R); err != nil {
		return nil, fmt.Errorf("waiting for the backend's FIN: %w", err)
	}
	go h.write()
	return h, nil
}

func (h *HalfStream) read() {
	defer close(h.done)
	n, err := checkPattern(h.c.R, func(d time.Duration) {
		h.mu.Lock()
		h.maxWait = max(h.maxWait, d)
		h.mu.Unlock()
	})
	h.mu.Lock()
	h.n, h.err = n, err
	h.mu.Unlock()
}

func (h *HalfStream) write() {
	defer close(h.done)
	err := writePattern(h.c, h.stop, 512, 2*time.Millisecond, func(off int64) {
		h.mu.Lock()
		h.n = off
		h.mu.Unlock()
	})
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
	if err == nil {
		h.c.CloseWrite()
	}
}

// Stop ends the stream: a client that half-closed waits for the end the
// server's Finish makes; one the server half-closed sends its FIN. It
// returns the bytes the client checked or sent, the longest wait for
// bytes (ClientFINs), and what went wrong, if anything.
func (h *HalfStream) Stop() (int64, time.Duration, error) {
	close(h.stop)
	<-h.done
	h.c.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, h.maxWait, h.err
}
