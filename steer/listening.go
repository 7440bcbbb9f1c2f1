//go:build linux

package steer

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/stickylb/stickylb/config"
)

// Listening returns the ports of ports on which some socket of this
// network namespace already listens at an address that addr reaches
// (addr itself, or any address if addr is a wildcard, and a wildcard
// socket always). A steered range must leave them out: the program runs
// before the kernel's own lookup, so it would take sshd's or the admin
// API's connections and forward them to a CAS.
func Listening(addr netip.Addr, ports config.Ports) ([]uint16, error) {
	var out []uint16
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		got, err := listeningIn(f, addr, ports)
		if err != nil {
			return nil, err
		}
		for _, p := range got {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func listeningIn(file string, addr netip.Addr, ports config.Ports) ([]uint16, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil // no IPv6 in this kernel
	}
	if err != nil {
		return nil, fmt.Errorf("steer: list the listening sockets: %w", err)
	}
	defer f.Close()
	var out []uint16
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
			continue
		}
		local, port, ok := parseProcAddr(fields[1])
		if ok && ports.Contains(int(port)) && reaches(addr, local) {
			out = append(out, port)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("steer: read %s: %w", file, err)
	}
	return out, nil
}

// reaches says whether a connection to addr could have been meant for a
// socket bound to local.
func reaches(addr, local netip.Addr) bool {
	addr, local = addr.Unmap(), local.Unmap()
	return addr.IsUnspecified() || local.IsUnspecified() || addr == local
}

// parseProcAddr reads /proc/net/tcp's "0100007F:1F90": the address as
// the kernel prints it, 32-bit words of network-order bytes read in host
// order, then the port in hex.
func parseProcAddr(s string) (netip.Addr, uint16, bool) {
	h, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, false
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return a, uint16(port), true
}
