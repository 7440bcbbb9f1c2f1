//go:build linux

package steer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/stickylb/stickylb/config"
)

// A binary upgrade hands the steering to the new process with the
// listening socket: duplicates of the link, the program and the socket
// map travel as descriptors beside the socket, rather than pinned in
// bpffs as Cloudflare's tubular does. Descriptors need no mounted bpffs
// and leave nothing behind when both processes end, and the kernel keeps
// the program attached while either holds the link. The new process
// swaps in a program for its own config's ports (link.Update, atomic),
// so there is never a moment when the range's SYNs find no program.

// Files returns duplicates of the link, the program and the map, in that
// order, for a process that takes over.
func (s *Steer) Files() ([]*os.File, error) {
	var out []*os.File
	for _, o := range []struct {
		fd   int
		name string
	}{{linkFD(s.link), "sk_lookup link"}, {s.prog.FD(), "sk_lookup program"}, {s.sock.FD(), "sk_lookup socket map"}} {
		d, err := unix.FcntlInt(uintptr(o.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, f := range out {
				f.Close()
			}
			return nil, fmt.Errorf("steer: duplicate the %s: %w", o.name, err)
		}
		out = append(out, os.NewFile(uintptr(d), o.name))
	}
	return out, nil
}

func linkFD(l link.Link) int {
	if fl, ok := l.(interface{ FD() int }); ok {
		return fl.FD()
	}
	return -1
}

// Kind says what a handed-over descriptor is: "bpf-link", "bpf-prog" or
// "bpf-map" for a steering's parts, "" for anything else (a socket).
func Kind(f *os.File) string {
	// Not f.Fd(), which would put a socket in blocking mode.
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(d uintptr) { fd = int(d) })
	}
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return ""
	}
	kind, ok := strings.CutPrefix(target, "anon_inode:")
	if !ok || !strings.HasPrefix(kind, "bpf") {
		return ""
	}
	return strings.ReplaceAll(kind, "_", "-") // the kernel calls a link's "bpf_link"
}

// Adopt takes over the steering of files (Files of the process this one
// replaces) for ln, the same socket, and swaps in a program that steers
// addr on ports. The files stay the caller's.
func Adopt(files []*os.File, ln *net.TCPListener, addr netip.Addr, ports config.Ports) (*Steer, error) {
	if len(files) != 3 || Kind(files[0]) != "bpf-link" || Kind(files[2]) != "bpf-map" {
		return nil, errors.New("steer: the handed-over steering is not a link, a program and a map")
	}
	s := &Steer{}
	var err error
	if s.sock, err = ebpf.NewMapFromFD(dupOf(files[2])); err != nil {
		return nil, failed("take the handed-over socket map", err)
	}
	if s.link, err = link.NewFromFD(dupOf(files[0])); err != nil {
		s.sock.Close()
		return nil, failed("take the handed-over link", err)
	}
	if err := s.hold(ln); err != nil {
		s.Close()
		return nil, err
	}
	s.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "stickylb_steer", Type: ebpf.SkLookup,
		AttachType: ebpf.AttachSkLookup, License: "Dual MIT/GPL", Instructions: program(s.sock.FD(), addr, ports)})
	if err != nil {
		s.Close()
		return nil, failed("load the sk_lookup program", err)
	}
	if err := s.link.Update(s.prog); err != nil {
		s.Close()
		return nil, failed("swap in the sk_lookup program", err)
	}
	return s, nil
}

// dupOf is a duplicate of f's descriptor, for a BPF object to own.
func dupOf(f *os.File) int {
	d, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return d
}
