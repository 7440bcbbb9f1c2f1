// Package daemon runs stickylb as a service: it starts the server, its
// metrics and its admin API (TCP and Unix socket), then follows what the
// operator and systemd ask for: a reload, a stop (stop_grace, then the
// drain up to drain_timeout), or a binary upgrade that hands every
// listening socket, the admin sockets and the state to a new process and
// takes them back if that process fails. The commands in cmd/stickylb
// only parse flags and call it; tests drive it in-process, with signals
// sent on a channel.
package daemon
