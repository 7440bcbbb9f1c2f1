//go:build linux

// Package soak runs stickylb under combined faults for minutes, as
// Jepsen and FoundationDB's simulation test: real processes, a seeded
// and replayable schedule of overlapping faults, and invariants checked
// throughout and at the end (issue 30).
//
// A run starts three members of the built stickylb binary as a cluster
// (127.0.40.1-3), three simulated CAS hosts (127.0.40.11-13, package sim;
// the third on dynamic RPC ports where the soak has its own namespaces)
// and a simulated Unity fleet whose connections go to the members in
// turn, as a router's ECMP spreads them. Then Schedule's faults hit them:
// a member killed with SIGKILL and restarted, a member stopped (SIGSTOP)
// for two seconds under load, a CAS killed and brought back, reloads of
// good and bad files, drain, maintenance and ready of a CAS set from
// different members, a binary upgrade (SIGUSR2) under the fleet and one
// whose new binary exits at once; and, where the test could make a
// network and mount namespace of its own (root; Isolate), a member cut
// from its peers and healed, and a member's state disk (a 2 MiB tmpfs)
// filled and freed. Check says, for each invariant, whether it held;
// Timeline and SVG show what happened, and each process's log is kept
// beside them.
//
// The command is the package's test:
//
//	go test ./kit/soak -run TestSoak -soak 10m -seed 7 -v
//
// Without -soak the test runs a short soak of fixed seeds, as CI does.
package soak
