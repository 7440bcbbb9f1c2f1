//go:build !linux

package proxy

import (
	"net"
	"time"
)

// watchIdle needs TCP_INFO; elsewhere the idle timeout is off and TCP
// keepalive alone finds dead peers.
func watchIdle(_, _ net.Conn, _ time.Duration, _ func()) (stop func()) { return func() {} }
