//go:build linux

// Package steer hands the connections for a set of ports on one address
// to a single listening socket, with a BPF sk_lookup program attached to
// the process's network namespace (Linux 5.9+). It is how one listener
// takes Exchange's whole dynamic RPC range (6005-59530) with one socket
// and one accept loop instead of 53,526 of each, and without the policy
// routing and firewall rules TPROXY needs: the kernel looks the program up
// when a SYN arrives for a port no established socket holds, and the
// accepted socket keeps the address and port the client dialled.
//
// The program is built here instruction by instruction (no C compiler at
// build time) and lives as long as the Steer: closing it, or the process
// ending, detaches it and leaves nothing behind in the kernel.
package steer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/stickylb/stickylb/config"
)

// Steer is an attached sk_lookup program and the socket map it steers to.
type Steer struct {
	prog *ebpf.Program
	sock *ebpf.Map
	link link.Link
}

// ErrNotAllowed says this process may not load or attach the program:
// it lacks CAP_BPF and CAP_NET_ADMIN, or the kernel has no sk_lookup.
var ErrNotAllowed = errors.New("sk_lookup is not available: it needs Linux 5.9 or later and the capabilities CAP_BPF and CAP_NET_ADMIN (or root)")

// Attach steers TCP connections to addr on any of ports to ln. An
// unspecified addr ("::" or "0.0.0.0") matches every local address, "::"
// of both families as a dual-stack socket does.
func Attach(ln *net.TCPListener, addr netip.Addr, ports config.Ports) (*Steer, error) {
	// Kernels before 5.11 charge BPF objects to RLIMIT_MEMLOCK; later
	// ones to the cgroup, and this does nothing.
	rlimit.RemoveMemlock()
	sock, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.SockMap, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, failed("create the socket map", err)
	}
	s := &Steer{sock: sock}
	if err := s.hold(ln); err != nil {
		s.Close()
		return nil, err
	}
	s.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "stickylb_steer", Type: ebpf.SkLookup,
		AttachType: ebpf.AttachSkLookup, License: "Dual MIT/GPL", Instructions: program(sock.FD(), addr, ports)})
	if err != nil {
		s.Close()
		return nil, failed("load the sk_lookup program", err)
	}
	ns, err := os.Open("/proc/self/ns/net")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open this process's network namespace: %w", err)
	}
	defer ns.Close()
	if s.link, err = link.AttachNetNs(int(ns.Fd()), s.prog); err != nil {
		s.Close()
		return nil, failed("attach the sk_lookup program", err)
	}
	return s, nil
}

// Listen opens a listening socket that Attach can steer to: plain TCP,
// since a socket map cannot hold an MPTCP listener, which Go's net
// package opens by default. control, if set, runs on the socket before
// bind, as net.ListenConfig's Control does.
func Listen(ctx context.Context, addr netip.AddrPort, control func(network, address string, c syscall.RawConn) error) (*net.TCPListener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: control}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// hold puts ln's socket into the map the program looks up.
func (s *Steer) hold(ln *net.TCPListener) error {
	raw, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("steer: listening socket: %w", err)
	}
	var uerr error
	if err := raw.Control(func(fd uintptr) { uerr = s.sock.Update(uint32(0), uint64(fd), ebpf.UpdateAny) }); err != nil {
		return fmt.Errorf("steer: listening socket: %w", err)
	}
	if uerr != nil {
		return failed("put the listening socket into the socket map", uerr)
	}
	return nil
}

// failed wraps a BPF error, telling a missing capability or kernel
// feature (ErrNotAllowed) from anything else.
func failed(what string, err error) error {
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("steer: %s: %w (%w)", what, ErrNotAllowed, err)
	}
	return fmt.Errorf("steer: %s: %w", what, err)
}

// Close detaches the program and frees the map; new connections to the
// steered ports are then refused (or go to whatever else listens there).
func (s *Steer) Close() error {
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
	}
	return errors.Join(append(errs, s.sock.Close())...)
}

// Offsets in struct bpf_sk_lookup (include/uapi/linux/bpf.h).
const (
	offFamily   = 8
	offProtocol = 12
	offLocalIP4 = 40
	offLocalIP6 = 44
	offLocalPrt = 60 // host byte order
	afInet      = 2
	afInet6     = 10
	ipprotoTCP  = 6
	skPass      = 1
)

// program is the sk_lookup program: for a TCP connection to addr on one
// of ports, look the listening socket up in the map and assign it. It
// always answers SK_PASS, so anything it does not steer (and a failed
// assignment) goes on to the kernel's own socket lookup.
func program(mapFD int, addr netip.Addr, ports config.Ports) asm.Instructions {
	in := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // the context, kept across calls
		asm.LoadMem(asm.R2, asm.R6, offProtocol, asm.Word),
		asm.JNE.Imm32(asm.R2, ipprotoTCP, "pass"),
		asm.LoadMem(asm.R2, asm.R6, offLocalPrt, asm.Word),
	}
	for i, r := range ports {
		next := fmt.Sprintf("range%d", i+1)
		first := asm.JLT.Imm32(asm.R2, int32(r.First), next)
		if i > 0 {
			first = first.WithSymbol(fmt.Sprintf("range%d", i))
		}
		in = append(in, first, asm.JLE.Imm32(asm.R2, int32(r.Last), "address"))
	}
	in = append(in, asm.Ja.Label("pass").WithSymbol(fmt.Sprintf("range%d", len(ports))))
	in = append(in, matchAddress(addr)...)
	return append(in,
		asm.StoreImm(asm.R10, -4, 0, asm.Word).WithSymbol("lookup"), // key 0
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnSkAssign.Call(),
		asm.Mov.Reg(asm.R1, asm.R7), // the looked-up socket holds a reference
		asm.FnSkRelease.Call(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	)
}

// matchAddress compares the connection's local address with addr,
// starting at the label "address" and going on to "lookup" on a match.
func matchAddress(addr netip.Addr) asm.Instructions {
	if addr.Is6() && addr.IsUnspecified() {
		return asm.Instructions{asm.Ja.Label("lookup").WithSymbol("address")}
	}
	in := asm.Instructions{asm.LoadMem(asm.R2, asm.R6, offFamily, asm.Word).WithSymbol("address")}
	a := addr.Unmap()
	if a.Is4() {
		in = append(in, asm.JNE.Imm32(asm.R2, afInet, "pass"))
		if !a.IsUnspecified() {
			b := a.As4()
			in = append(in, asm.LoadMem(asm.R2, asm.R6, offLocalIP4, asm.Word),
				asm.JNE.Imm32(asm.R2, int32(binary.NativeEndian.Uint32(b[:])), "pass"))
		}
		return append(in, asm.Ja.Label("lookup"))
	}
	in = append(in, asm.JNE.Imm32(asm.R2, afInet6, "pass"))
	b := a.As16()
	for i := range 4 {
		in = append(in, asm.LoadMem(asm.R2, asm.R6, int16(offLocalIP6+4*i), asm.Word),
			asm.JNE.Imm32(asm.R2, int32(binary.NativeEndian.Uint32(b[4*i:])), "pass"))
	}
	return append(in, asm.Ja.Label("lookup"))
}

// probeAddr is an address no listener uses, so the moment Probe's
// program is attached steers nothing.
var probeAddr = netip.MustParseAddr("127.255.255.254")

// Probe tells whether this process may steer ports: it attaches a
// program for one port of an unused address to a throw-away socket and
// detaches it again. The error wraps ErrNotAllowed when it may not.
func Probe() error {
	ln, err := Listen(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), nil)
	if err != nil {
		return fmt.Errorf("steer: probe socket: %w", err)
	}
	defer ln.Close()
	s, err := Attach(ln, probeAddr, config.Ports{{First: 1, Last: 1}})
	if err != nil {
		return err
	}
	return s.Close()
}
