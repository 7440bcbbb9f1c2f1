//go:build linux

package proxy

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// watchIdle closes a connection once no data has arrived on either leg for
// timeout. It asks the kernel when each socket last received data
// (TCP_INFO) instead of resetting a deadline on every read, which would
// need a user-space copy loop and lose splice. One timer per connection,
// re-armed for the time still left.
func watchIdle(client, backend net.Conn, timeout time.Duration, abort func()) (stop func()) {
	var t *time.Timer
	check := func() {
		idle := min(sinceRecv(client), sinceRecv(backend))
		if idle >= timeout {
			abort()
			return
		}
		t.Reset(timeout - idle)
	}
	// Arm only after t is set, so check never sees it unset.
	t = time.AfterFunc(time.Duration(1<<62), check)
	t.Reset(timeout)
	return func() { t.Stop() }
}

// sinceRecv is how long ago the socket last received data; 0 when unknown,
// which keeps the connection open.
func sinceRecv(c net.Conn) time.Duration {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var info *unix.TCPInfo
	_ = raw.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil || info == nil {
		return 0
	}
	return time.Duration(info.Last_data_recv) * time.Millisecond
}
