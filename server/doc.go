//go:build linux

// Package server assembles a running balancer from a config: it builds
// the pools, affinity tables and health checkers, binds the listeners, and
// applies reloads all or nothing. It is what `stickylb run` and the lab
// both run, so the lab exercises the production path.
//
// A reload keeps what survives: listeners on the same address keep their
// socket and open connections, pools keep their affinity table (when the
// key kind is unchanged) and backends of the same name and address keep
// their health and connection counts. A new listener that cannot bind
// fails the whole reload and the running config stays.
//
// The files split the work: server.go is the lifecycle (New, Start,
// Reload, Shutdown), apply.go makes a config current, build.go turns
// config into routes and probes, health.go runs the checkers, ops.go
// carries out operator actions, conns.go lists and closes connections,
// views.go is what the admin API reads, pins.go follows the affinity
// tables, cluster.go joins a cluster and store.go keeps the pins on disk
// through package persist (snapshot and journal).
//
// It builds on Linux only, as proxy does.
package server
