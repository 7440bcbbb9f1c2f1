// Package kit holds the lab and benchmark kit, apart from the balancer: sim
// (simulated CAS hosts and Unity fleet), lab (broken balancers and the
// scenarios of `stickylb lab`), bench (the load generator and scorer),
// capture (packet capture analysis) and lbtest (loopback backends and
// clients for tests). The binary's lab, sim, bench and analyze
// subcommands use them; no runtime package imports them, which
// layout_test.go checks together with the runtime packages' layering.
package kit
