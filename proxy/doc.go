//go:build linux

// Package proxy accepts client connections and forwards each to the backend
// its client is pinned to.
//
// The files: listener.go accepts, ports.go binds a listener's ports (one
// socket, one per port, or one steered by sk_lookup), conn.go is one
// connection, the one owner of its state and of its clean-up (set-up:
// identify, decide, dial; finish), refuse.go closes a client without a
// backend, by one table of reasons, policy.go is the pin rule,
// session.go runs an open connection's two directions and writes its
// closing line, copy.go moves the bytes, idle.go is the idle timeout,
// dial.go and transparent.go open backend legs, origin.go reads PROXY
// headers, limits.go bounds each client, conns.go lists open
// connections, termination.go names how they end, route.go is what a
// listener follows and observer.go what it tells metrics; pinhole.go
// keeps the ports a listener of the endpoint mapper learned
// (Route.InspectDCERPC), and follow.go reads that listener's stream and
// connects a learned port's clients.
//
// A Listener accepts on one address and follows a Route, which names the
// pool, the affinity table and the timeouts; the route is swapped
// atomically on reload without touching open connections. For each
// connection the client's identity (by default the socket's remote
// address; a PROXY protocol header with Route.Identify) becomes an
// affinity key, the Policy decides the backend through the table before
// anything is dialled, and the Dialer opens the backend leg (from the
// client's own address in transparent mode). A backend that refuses is skipped and the client re-pinned,
// a bounded number of times. Each direction copies small messages through
// a pooled buffer and switches to splice(2) once a read fills it (see
// relay); each ends with a half-close and the half-closed state is bounded
// by a deadline.
//
// The package builds on Linux only: the copy path makes raw read, write,
// splice and shutdown calls, the idle timeout reads TCP_INFO, and keepalive
// is set with Linux's socket options.
package proxy
