//go:build linux

// Package bench measures any TCP balancer from the client side: it drives
// short, long-lived, bulk or DCE/RPC connections from many source
// addresses to backends that say who they are (package loop), and scores speed
// (connections per second, latency percentiles, throughput) and affinity
// (clients seen on more than one backend, balance across backends, how
// many clients move when a backend is removed), without trusting the
// balancer's own counters.
//
// It builds on Linux only: its clients bind with IP_BIND_ADDRESS_NO_PORT.
//
// It is part of the lab and benchmark kit (kit/), which no runtime package
// imports.
package bench
