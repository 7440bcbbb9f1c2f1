package proxy

import (
	"io"
	"net"
	"sync"
	"syscall"

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
func relay(dst, src net.Conn) (int64, error) {
	d, ok1 := dst.(*net.TCPConn)
	s, ok2 := src.(*net.TCPConn)
	if !ok1 || !ok2 {
		return io.Copy(dst, src)
	}
	raw, err := s.SyscallConn()
	if err != nil {
		return io.Copy(dst, src)
	}
	var r reader
	read := r.read // one closure for the connection, not one per read
	var total int64
	for {
		r.buf, r.n, r.err = nil, 0, nil
		if err := raw.Read(read); err != nil {
			return total, err // closed, or the read deadline passed
		}
		if r.err != nil {
			return total, r.err
		}
		if r.n == 0 {
			return total, nil // EOF
		}
		n, err := d.Write(r.buf[:r.n])
		total += int64(n)
		full := r.n == bufSize
		bufs.Put(r.buf)
		if err != nil {
			return total, err
		}
		if full {
			m, err := io.Copy(d, s)
			return total + m, err
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
		n, err := unix.Read(int(fd), buf[:])
		switch err {
		case nil:
			if n == 0 { // EOF
				bufs.Put(buf)
				return true
			}
			r.buf, r.n = buf, n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			bufs.Put(buf)
			return false
		}
		bufs.Put(buf)
		r.err = &net.OpError{Op: "read", Net: "tcp", Err: syscall.Errno(err.(unix.Errno))}
		return true
	}
}
