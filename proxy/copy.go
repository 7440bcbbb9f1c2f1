//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bufSize is the user-space copy buffer, HAProxy's default bufsize. A read
// that fills it marks the stream as bulk.
const bufSize = 16 << 10

var bufs = sync.Pool{New: func() any { return new([bufSize]byte) }}

// relay copies src to dst until src's EOF and returns the bytes copied.
//
// Small messages, which is what RPC traffic is, go through a pooled
// buffer with read(2) and write(2): cheaper in the kernel than splice's
// two trips through a pipe, and the buffer is taken only once the socket
// has data, so an idle connection holds neither a buffer nor a pipe. A
// read that fills the buffer means a bulk transfer, and the rest of the
// stream goes by splice(2) (io.Copy between two TCPConns), as HAProxy's
// splice-auto does.
//
// The reads and writes are raw system calls on non-blocking sockets, so
// they never sleep in the kernel, but a loopback write can spend tens of
// microseconds there delivering to the peer. Through the runtime's
// ordinary system call path, its monitor took the processor away from
// such writes and woke another thread to hold it, which then went back to
// sleep: two context switches for nothing, several times per connection.
//
// count, if not nil, hears the bytes as they go (each write, or each
// spliceChunk), so that counters move while a connection of hours is
// open; it must be cheap (an atomic add).
func relay(dst, src net.Conn, count func(int64)) (int64, error) {
	return relaySeeing(dst, src, count, nil)
}

// relaySeeing is relay that hands see, if not nil, every piece read
// before it is written, for as long as see says to go on (a DCE/RPC
// tracker, rpc.go). While it does, a full read does not turn the copy to
// splice: the tracker must see every byte.
func relaySeeing(dst, src net.Conn, count func(int64), see func([]byte) bool) (int64, error) {
	d, ok1 := dst.(*net.TCPConn)
	s, ok2 := src.(*net.TCPConn)
	if !ok1 || !ok2 {
		return copySeeing(dst, src, count, see)
	}
	rawSrc, err := s.SyscallConn()
	if err != nil {
		return copySeeing(dst, src, count, see)
	}
	rawDst, err := d.SyscallConn()
	if err != nil {
		return copySeeing(dst, src, count, see)
	}
	var (
		r     reader
		w     writer
		read  = r.read // one closure each for the connection, not per call
		write = w.write
		total int64
	)
	for {
		r.buf, r.n, r.err = nil, 0, nil
		if err := rawSrc.Read(read); err != nil {
			return total, err // closed, or the read deadline passed
		}
		if r.err != nil {
			return total, r.err
		}
		if r.n == 0 {
			return total, nil // EOF
		}
		if see != nil && !see(r.buf[:r.n]) {
			see = nil
		}
		w.p, w.n, w.err = r.buf[:r.n], 0, nil
		err := rawDst.Write(write)
		total += int64(w.n)
		if count != nil && w.n > 0 {
			count(int64(w.n))
		}
		full := r.n == bufSize && see == nil
		bufs.Put(r.buf)
		if err == nil {
			err = w.err
		}
		if err != nil {
			return total, err
		}
		if full {
			m, err := spliceCounted(d, s, count)
			return total + m, err
		}
	}
}

// copySeeing is relaySeeing for connections that are not plain TCP.
func copySeeing(dst, src net.Conn, count func(int64), see func([]byte) bool) (int64, error) {
	buf := make([]byte, bufSize)
	var total int64
	for see != nil {
		n, err := src.Read(buf)
		if n > 0 {
			if !see(buf[:n]) {
				see = nil
			}
			m, werr := dst.Write(buf[:n])
			total += int64(m)
			if count != nil && m > 0 {
				count(int64(m))
			}
			if werr != nil {
				return total, werr
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return total, nil
		case err != nil:
			return total, err
		}
	}
	m, err := io.Copy(dst, src)
	return total + m, err
}

// spliceChunk is how much a bulk transfer moves between counts. A
// transfer that stops part way through a chunk is counted in full when
// more data comes or the connection closes, so open connections' counts
// lag by less than this per direction; large enough that counting costs
// nothing next to the copy.
const spliceChunk = 1 << 20

// spliceCounted copies src to dst by splice(2) until EOF, counting every
// spliceChunk. io.CopyN hands TCPConn.ReadFrom an io.LimitedReader over
// the socket, which it still splices.
func spliceCounted(d, s *net.TCPConn, count func(int64)) (int64, error) {
	if count == nil {
		return io.Copy(d, s)
	}
	var total int64
	for {
		n, err := io.CopyN(d, s, spliceChunk)
		total += n
		if n > 0 {
			count(n)
		}
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// reader is relay's read step, run by the poller when the socket may have
// data. The buffer is taken from the pool only when data is there.
//
// It always tries the read before waiting: RawConn.Read clears the
// poller's readiness note on entry, so skipping the attempt after a short
// read would lose data that arrived in between (seen: a hung echo).
type reader struct {
	buf *[bufSize]byte
	n   int
	err error
}

func (r *reader) read(fd uintptr) bool {
	buf := bufs.Get().(*[bufSize]byte)
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), bufSize)
		switch errno {
		case 0:
			if n == 0 { // EOF
				bufs.Put(buf)
				return true
			}
			r.buf, r.n = buf, int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			bufs.Put(buf)
			return false
		}
		bufs.Put(buf)
		r.err = &net.OpError{Op: "read", Net: "tcp", Err: syscall.Errno(errno)}
		return true
	}
}

// writer is relay's write step: it writes all of p, waiting for the socket
// to take more when its send buffer is full.
type writer struct {
	p   []byte
	n   int
	err error
}

func (w *writer) write(fd uintptr) bool {
	for w.n < len(w.p) {
		rest := w.p[w.n:]
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch errno {
		case 0:
			w.n += int(n)
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.err = &net.OpError{Op: "write", Net: "tcp", Err: syscall.Errno(errno)}
		return true
	}
	return true
}

// closeWrite half-closes c: the peer reads EOF and may still answer. On a
// TCP socket it is a raw shutdown(2), for the reason relay's calls are
// raw: sending the FIN delivers it to the peer within the call.
func closeWrite(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		if cw, ok := c.(closeWriter); ok {
			return cw.CloseWrite()
		}
		return c.Close()
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return tc.CloseWrite()
	}
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return &net.OpError{Op: "shutdown", Net: "tcp", Err: errno}
	}
	return nil
}

// halfCopy copies src to dst with cp until src's EOF (see relay), then half-closes
// dst and gives dst's own sender halfClose to finish. On an error both
// sockets are closed so the other direction ends too. open counts the
// directions still copying: when the other one has ended already, both
// sockets are about to be closed, which sends the FIN, so the shutdown(2)
// is skipped.
//
// ended, if not nil, hears how the read side ended before anything is
// passed on to the other side, so the order in which the two directions
// report is the order in which their peers acted.
//
// p, if not nil, tells a pause's deadline (move.go) from an error:
// halfCopy then returns errPaused and touches neither socket. It also
// sets the half-close deadline, so that a pause knows it and keeps it. It is an
// interface rather than a method value, which would allocate per call.
func halfCopy(cp copier, dst, src net.Conn, halfClose time.Duration, open *atomic.Int32, count func(int64), p pauser, ended func(error)) (int64, error) {
	n, err := cp(dst, src, count)
	if p != nil && p.isPause(err) {
		return n, errPaused
	}
	if ended != nil {
		ended(err)
	}
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
	if p != nil {
		p.halfClosed(dst, halfClose)
	} else if halfClose > 0 {
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
