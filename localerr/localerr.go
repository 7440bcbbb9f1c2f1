// Package localerr tells a failure of this host's own resources (file
// descriptors, local ports, socket buffers, memory) from a failure of the
// peer. A balancer that counts "too many open files" against a backend
// marks healthy servers down and moves their clients, so every caller
// that judges a backend asks here first.
package localerr

import (
	"errors"
	"syscall"
)

// errnos are the local resource errors a connect, accept or probe can
// meet, by the name metrics and logs use.
var errnos = []struct {
	errno syscall.Errno
	name  string
}{
	{syscall.EMFILE, "EMFILE"},               // this process is out of file descriptors
	{syscall.ENFILE, "ENFILE"},               // the system is
	{syscall.EADDRNOTAVAIL, "EADDRNOTAVAIL"}, // no local port left for the destination
	{syscall.EADDRINUSE, "EADDRINUSE"},       // a local address is taken
	{syscall.ENOBUFS, "ENOBUFS"},             // no socket buffer space
	{syscall.ENOMEM, "ENOMEM"},               // no kernel memory
	// A transparent dial from a client's address to a backend of the
	// other family: the config's listeners and backends do not fit.
	{syscall.EAFNOSUPPORT, "EAFNOSUPPORT"},
}

// Names lists every name Name can return, for metrics that exist from
// start-up.
func Names() []string {
	out := make([]string, len(errnos))
	for i, e := range errnos {
		out[i] = e.name
	}
	return out
}

// Name returns the errno name of a local resource error ("EMFILE"), or ""
// when err holds none: then the fault, if any, is the peer's. Joined
// errors are searched whole, so a probe of several ports that met one
// local error is inconclusive.
func Name(err error) string {
	if err == nil {
		return ""
	}
	for _, e := range errnos {
		if errors.Is(err, e.errno) {
			return e.name
		}
	}
	return ""
}

// Is reports whether err is a local resource error.
func Is(err error) bool { return Name(err) != "" }
