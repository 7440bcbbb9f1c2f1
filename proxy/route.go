//go:build linux

package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
)

// Route is what a listener does with a connection. It is replaced as a
// whole on reload; a connection uses the route it was accepted under.
// Every field but Pool and Port may be left zero, which means the default
// its comment names.
type Route struct {
	// Name is the listener's name in logs and metrics.
	Name string
	// Pool is where connections go. Required.
	Pool *pool.Pool
	// Table keeps the pool's pins; nil keeps none, and every connection
	// is balanced afresh (affinity key "none").
	Table *affinity.Table
	// Keyer turns the client's address into its affinity key; the zero
	// value keys on the source address.
	Keyer affinity.Keyer
	// Port is the backend port; 0 forwards each connection to the port
	// its client dialled (a listener of several ports).
	Port int
	// ClientPorts are the ports, of a listener of several (Port 0), whose
	// backend port the client chooses (config.Listener.ClientPorts): a
	// connect that fails there is the client's doing. It does not count
	// toward the passive check, no other backend is tried (a dynamic
	// port means something else or nothing there), and the client is
	// refused as RefusedClientPort.
	ClientPorts config.Ports
	// Policy decides between keeping, moving and refusing a pin; the zero
	// value re-pins a client whose backend cannot take it and never fails
	// back.
	Policy Policy
	// ConnectTimeout bounds each backend connect; 0 means
	// config.DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration
	// Retries is how many other backends a connection may try after the
	// first refuses; 0 tries one backend only.
	Retries int
	// IdleTimeout closes a connection with no data either way for this
	// long; 0 turns it off, leaving dead peers to TCP keepalive.
	IdleTimeout time.Duration
	// HalfCloseTimeout bounds how long a connection may stay half-closed;
	// 0 sets no bound.
	HalfCloseTimeout time.Duration
	// Dialer opens the backend leg; nil means NetDialer{}, the proxy's
	// own address and no TCP keepalive.
	Dialer Dialer
	// Observer hears of every connection, for metrics; its zero value
	// hears nothing and costs a nil check per event.
	Observer Observer
	// PassiveFall, if more than 0, takes a backend down after that many
	// failed connects in a row; active checks bring it back.
	PassiveFall int
	// OnPassiveDown, if set, hears when a passive check took a backend
	// down.
	OnPassiveDown func(b *pool.Backend, err error)
	// Limits, if set, bounds each client address's connections (shared
	// by the routes of one pool); nil sets no bound and costs nothing.
	Limits *Limiter
	// Identify, if set, tells where a connection comes from instead of
	// the socket: ProxyProtocol.Identify reads a PROXY header.
	Identify func(*net.TCPConn) (Origin, error)
	// SendProxy, 1 or 2, writes a PROXY header of that version to the
	// backend ahead of the client's bytes; 0 (the default) writes none,
	// which is what a CAS needs: Exchange does not speak it.
	SendProxy int
	// InspectDCERPC, on a listener of the endpoint mapper (135), reads
	// the CAS's ept_map answers as they are forwarded (unchanged) and
	// opens a pinhole for each port handed out: that client's
	// connections to that port on the listener's address go to the CAS
	// that handed it out (see Pinholes). Off by default.
	InspectDCERPC bool
	// DCERPC reads the route's connections as DCE/RPC this deep: the
	// bind and its answer (config.RPCBinds), or every PDU header
	// (config.RPCCalls); what is learned is in ConnInfo.RPC and told to
	// Observer.RPC. Off by default: nothing is read.
	DCERPC config.DCERPC
	// PinholeTimeout is how long a learned port outlives its last
	// connection; 0 means config.DefaultPinholeTimeout.
	PinholeTimeout time.Duration

	// pinholes, on a learned port's socket, decide its connections'
	// backend.
	pinholes *Pinholes
}

func (r *Route) connectTimeout() time.Duration {
	if r.ConnectTimeout > 0 {
		return r.ConnectTimeout
	}
	return config.DefaultConnectTimeout
}

func (r *Route) dialer() Dialer {
	if r.Dialer != nil {
		return r.Dialer
	}
	return NetDialer{}
}

// Refusal says why a client connection was closed without a backend.
type Refusal string

const (
	RefusedIdentify    Refusal = "identify"       // the client's identity could not be read
	RefusedNoBackend   Refusal = "no-backend"     // no backend can take the client
	RefusedRejected    Refusal = "rejected"       // its backend cannot, and on_down is reject
	RefusedConnect     Refusal = "connect-failed" // every backend tried failed to connect
	RefusedLocal       Refusal = "local-error"    // this host is out of a resource (file descriptors, ports, ...)
	RefusedClientConns Refusal = "client-conns"   // the client has max_conns_per_client open already
	RefusedClientRate  Refusal = "client-rate"    // the client opens connections faster than conn_rate_per_client
	RefusedClientPort  Refusal = "client-port"    // the port it dialled in a range is closed on its backend: the client's choice, not the backend's fault
	// RefusedProxyUntrusted: a PROXY listener's source is not in
	// proxy_trusted; RefusedProxyHeader: no valid PROXY header in time.
	RefusedProxyUntrusted Refusal = "proxy-untrusted"
	RefusedProxyHeader    Refusal = "proxy-header"
	// RefusedNoPinhole: a learned port was not handed to this client
	// (or its pinhole lapsed); RefusedPinholeDown: the CAS that handed
	// it out cannot take it, and no other CAS knows the port.
	RefusedNoPinhole   Refusal = "no-pinhole"
	RefusedPinholeDown Refusal = "pinhole-backend-down"
)

// Refusals lists every Refusal, for metrics that exist from start-up.
var Refusals = []Refusal{RefusedIdentify, RefusedNoBackend, RefusedRejected, RefusedConnect, RefusedLocal,
	RefusedClientConns, RefusedClientRate, RefusedClientPort, RefusedProxyUntrusted, RefusedProxyHeader,
	RefusedNoPinhole, RefusedPinholeDown}

// DialFailure names the kind of a failed backend connect, for logs and
// metrics.
type DialFailure string

const (
	DialRefused     DialFailure = "refused"
	DialTimeout     DialFailure = "timeout"
	DialUnreachable DialFailure = "unreachable"
	DialReset       DialFailure = "reset"
	DialDNS         DialFailure = "dns"
	DialOther       DialFailure = "other"
)

// DialFailures lists every DialFailure, for metrics that exist from
// start-up.
var DialFailures = []DialFailure{DialRefused, DialTimeout, DialUnreachable, DialReset, DialDNS, DialOther}

// DialFailureOf names a connect (or probe) failure.
func DialFailureOf(err error) DialFailure {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return DialRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return DialTimeout
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return DialUnreachable
	case errors.Is(err, syscall.ECONNRESET):
		return DialReset
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return DialDNS
	}
	return DialOther
}
