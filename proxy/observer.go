//go:build linux

package proxy

import (
	"time"

	"github.com/stickylb/stickylb/pool"
)

// Observer follows connections, for metrics, as inetaf/tcpproxy's hooks
// do: each field is optional, and one left nil is not called, so the
// zero Observer hears nothing and costs a nil check per event. Calls
// come from connection goroutines and must not block.
//
// A connection makes three calls: Accepted, Opened if it reached a
// backend, and Ended, once, however it ended. ConnectFailed and
// LocalError are the rare events between.
type Observer struct {
	// Accepted hears of every accepted connection.
	Accepted func(listener string)
	// Opened hears of a connection given to b, connect after its first
	// connect attempt (retries included).
	Opened func(listener string, b *pool.Backend, connect time.Duration)
	// Ended hears how every accepted connection ended, refused ones too:
	// once per connection, when it has let go of all it held.
	Ended func(listener string, e Ending)
	// Moved hears of a connection to b handed over at an upgrade: out of
	// this process (no Ended follows here), or into it (its Ended
	// follows, without Accepted or Opened).
	Moved func(listener string, b *pool.Backend, in bool)
	// ConnectFailed hears of each failed connect to a backend, including
	// those a retry then made good.
	ConnectFailed func(listener string, b *pool.Backend, why DialFailure)
	// RPC hears every bind's answer and every call's end on a
	// connection to b of a route that reads DCE/RPC (Route.DCERPC).
	RPC func(listener string, b *pool.Backend, o RPCOutcome)
	// LocalError counts a failure of this host's own resources in op
	// ("accept" or "dial"), by errno name (see package localerr).
	LocalError func(listener, op, errno string)
}

// Ending is how one connection ended, as Observer.Ended hears it.
type Ending struct {
	Termination Termination
	// Refusal says why it was closed without a backend; "" when it
	// reached one.
	Refusal Refusal
	// Backend is the backend it was given to (Observer.Opened heard of
	// it), or nil when it reached none.
	Backend *pool.Backend
	// Duration is the time from accept to the end.
	Duration time.Duration
	// ToBackend and ToClient are the bytes copied each way.
	ToBackend, ToClient int64
	// RPCUnparsed is the bytes, both ways, that reading DCE/RPC could
	// not read (forwarded unchanged all the same); 0 when not read.
	RPCUnparsed int64
}
