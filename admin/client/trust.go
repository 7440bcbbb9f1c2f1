//go:build linux

package client

import (
	"bufio"
	byteorder "encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// socketOwner is the user owning the TCP socket of this network
// namespace bound to local and connected to remote: for the server end
// of a loopback connection, the user who made the listening socket (an
// accepted socket takes its listener's owner). /proc/net/tcp and tcp6
// list every socket with its owner's uid.
func socketOwner(local, remote netip.AddrPort) (uint32, error) {
	local, remote = unmapped(local), unmapped(remote)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue // no IPv6, for one
		}
		uid, found, err := findSocket(f, local, remote)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", file, err)
		}
		if found {
			return uid, nil
		}
	}
	return 0, fmt.Errorf("who serves %s: %w", local, errNoSocket)
}

// findSocket reads a /proc/net/tcp table for the socket from local to
// remote and returns its uid.
func findSocket(f *os.File, local, remote netip.AddrPort) (uid uint32, found bool, err error) {
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		l, lerr := procAddr(fields[1])
		r, rerr := procAddr(fields[2])
		if lerr != nil || rerr != nil || l != local || r != remote {
			continue
		}
		n, err := strconv.ParseUint(fields[7], 10, 32)
		return uint32(n), err == nil, err
	}
	return 0, false, sc.Err()
}

// procAddr parses an address of /proc/net/tcp: hex words in host order,
// a colon, the port in hex.
func procAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || len(raw)%4 != 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	// The kernel prints each 32-bit word of the address as the number
	// its bytes are in this machine's order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		byteorder.NativeEndian.PutUint32(b[i:], byteorder.BigEndian.Uint32(raw[i:]))
	}
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

func unmapped(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// fileUID is the owner of the file fi describes.
func fileUID(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}

// userName is uid's name, or uid in digits.
func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return "uid " + strconv.FormatUint(uint64(uid), 10)
}
