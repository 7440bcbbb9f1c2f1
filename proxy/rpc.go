//go:build linux

package proxy

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/pool"
)

// Reading a pool's connections as DCE/RPC (Route.DCERPC): the bind and
// its answer, and with "calls" every PDU header, as the bytes go by,
// unchanged. What is learned goes through one function, rpcOutcome.

// RPCKind says what an RPCOutcome is.
type RPCKind uint8

const (
	// RPCBind is the backend's answer to a bind or alter_context.
	RPCBind RPCKind = iota + 1
	// RPCCall is the end of a call: a response, or a fault.
	RPCCall
)

// RPCOutcome is one bind's answer or one call's end on a connection, as
// the backend gave it.
type RPCOutcome struct {
	Kind RPCKind
	// Interface is the interface the client bound (RPCBind), and
	// Result the answer; Alter says it answered an alter_context.
	Interface dcerpc.Syntax
	Result    dcerpc.BindResult
	Alter     bool
	// Fault says the call (RPCCall) ended in a fault with Status;
	// Elapsed is the time from its request to its answer, 0 when the
	// request was not seen.
	Fault   bool
	Status  uint32
	Elapsed time.Duration
}

// OK says the outcome is a success: an accepted bind, a call answered
// without a fault.
func (o RPCOutcome) OK() bool {
	if o.Kind == RPCBind {
		return o.Result.Accepted
	}
	return !o.Fault
}

// RPCSession is what reading a connection learned of its RPC session,
// as ConnInfo shows it.
type RPCSession struct {
	// Interface is the interface of the connection's last bind or
	// alter_context, Result its answer and Since when it came; Bound is
	// false until an answer came.
	Interface dcerpc.Syntax
	Result    dcerpc.BindResult
	Bound     bool
	Since     time.Time
	// Calls and Faults count the calls ended and those that faulted
	// (with dcerpc = "calls").
	Calls, Faults uint64
}

// BindWord is the session's bind as a word: "accepted", "rejected"
// (in a bind_ack or alter_context_resp), "nak" (bind_nak), or
// "pending" before any answer.
func (s RPCSession) BindWord() string { return bindWord(s.Bound, s.Result) }

func bindWord(bound bool, r dcerpc.BindResult) string {
	switch {
	case !bound:
		return "pending"
	case r.Accepted:
		return "accepted"
	case r.Nak:
		return "nak"
	}
	return "rejected"
}

// InterfaceName names an interface as an operator reads it: "EMSMDB
// a4f1db00-ca47-1067-b31f-00dd010662da v0.81", or for an interface
// stickylb does not know, its UUID and version.
func InterfaceName(s dcerpc.Syntax) string {
	if n := s.Name(); n != "" {
		return n + " " + s.String()
	}
	return s.String()
}

// rpcState is a read connection's tracker and what it learned.
type rpcState struct {
	t dcerpc.Tracker

	mu      sync.Mutex
	session RPCSession
}

func newRPCState(depth config.DCERPC) *rpcState {
	if depth == config.RPCOff {
		return nil
	}
	return &rpcState{t: dcerpc.Tracker{Calls: depth == config.RPCCalls}}
}

func (s *rpcState) snapshot() *RPCSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.session
	return &v
}

// rpcOutcome is the one place every bind's answer and every call's end
// on a connection to b goes: the connection's session (ctl sessions),
// the pool's outlier detection ([pool.NAME.outlier]), and the observer
// (metrics).
func (c *conn) rpcOutcome(b *pool.Backend, o RPCOutcome) {
	s := c.rpc
	s.mu.Lock()
	switch o.Kind {
	case RPCBind:
		s.session.Interface, s.session.Result, s.session.Bound, s.session.Since = o.Interface, o.Result, true, time.Now()
	case RPCCall:
		s.session.Calls++
		if o.Fault {
			s.session.Faults++
		}
	}
	s.mu.Unlock()
	b.ObserveRPC(o.forOutliers())
	if f := c.r.Observer.RPC; f != nil {
		f(c.r.Name, b, o)
	}
}

// forOutliers is the outcome as the pool's outlier detection counts it.
func (o RPCOutcome) forOutliers() pool.RPCOutcome {
	switch {
	case o.Kind == RPCBind && o.OK():
		return pool.BindAccepted
	case o.Kind == RPCBind:
		return pool.BindRejected
	case o.OK():
		return pool.CallOK
	}
	return pool.CallFault
}

// rpcFromClient and rpcFromServer hand the tracker what each direction
// read, before it is passed on; they say whether to go on reading.
func (c *conn) rpcFromClient(p []byte) bool {
	c.rpc.t.FromClient(p, time.Now())
	return !c.rpc.t.ClientDone()
}

func (c *conn) rpcFromServer(p []byte) bool {
	for _, e := range c.rpc.t.FromServer(p, time.Now()) {
		o := RPCOutcome{Kind: RPCCall, Fault: e.Fault, Status: e.Status, Elapsed: e.Elapsed}
		if e.Kind == dcerpc.EventBind {
			o = RPCOutcome{Kind: RPCBind, Interface: e.Interface, Result: e.Bind, Alter: e.Alter}
		}
		c.rpcOutcome(c.b, o)
	}
	return !c.rpc.t.ServerDone()
}

// rpcCopiers read both directions for the tracker as relay copies them,
// in user space, until the tracker is done with a direction (with
// "binds", after its first PDU); from then on relay copies as for any
// connection, by splice for bulk.
func (c *conn) rpcCopiers() (toBackend, toClient copier) {
	toBackend = func(dst, src net.Conn, count func(int64)) (int64, error) {
		if c.rpc.t.ClientDone() {
			return relay(dst, src, count)
		}
		return relaySeeing(dst, src, count, c.rpcFromClient)
	}
	toClient = func(dst, src net.Conn, count func(int64)) (int64, error) {
		if c.rpc.t.ServerDone() {
			return relay(dst, src, count)
		}
		return relaySeeing(dst, src, count, c.rpcFromServer)
	}
	return toBackend, toClient
}

// rpcAttrs are the closing log line's words on the RPC session.
func (c *conn) rpcAttrs() []slog.Attr {
	s := c.rpc.snapshot()
	iface := "none"
	if s.Bound {
		iface = InterfaceName(s.Interface)
	}
	return []slog.Attr{slog.String("rpc_interface", iface), slog.String("rpc_bind", s.BindWord()),
		slog.Uint64("rpc_calls", s.Calls), slog.Uint64("rpc_faults", s.Faults)}
}
