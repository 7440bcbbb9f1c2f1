package affinity

import (
	"fmt"
	"net/netip"

	"github.com/stickylb/stickylb/config"
)

// Key identifies a client in the table. It is a small comparable value with
// no pointers, so a million of them cost the garbage collector nothing to
// scan.
type Key struct {
	ip   [16]byte
	port uint16
	bits uint8 // prefix length for SrcNet, 0 otherwise
	v4   bool
}

// Keyer turns a client's address into its Key. The zero value keys on the
// source address.
type Keyer struct {
	Kind     config.KeyKind
	V4Prefix int // SrcNet prefix length for IPv4 clients (0 means config.DefaultIPv4Prefix)
	V6Prefix int // SrcNet prefix length for IPv6 clients (0 means config.DefaultIPv6Prefix)
}

// Key returns the identity of client under k's kind. The client address is
// whatever the caller decided identifies the client, which need not be the
// socket's remote address (a PROXY header may say otherwise).
func (k Keyer) Key(client netip.AddrPort) Key {
	a := client.Addr().Unmap()
	var key Key
	key.v4 = a.Is4()
	switch k.Kind {
	case config.SrcNet:
		bits := k.V6Prefix
		if bits == 0 {
			bits = config.DefaultIPv6Prefix
		}
		if key.v4 {
			bits = k.V4Prefix
			if bits == 0 {
				bits = config.DefaultIPv4Prefix
			}
		}
		if p, err := a.Prefix(bits); err == nil {
			a = p.Addr()
		}
		key.bits = uint8(bits)
	case config.Connection, config.NoPins:
		key.port = client.Port()
	}
	key.ip = a.As16()
	return key
}

// Makes reports whether key k is one this Keyer makes: a key read back
// from a file written under another key kind or prefix is not.
func (k Keyer) Makes(key Key) bool {
	perConnection := k.Kind == config.Connection || k.Kind == config.NoPins
	return perConnection == (key.port != 0) && k.Key(netip.AddrPortFrom(key.Addr(), key.port)) == key
}

// Addr returns the (masked, for SrcNet) address of the key.
func (k Key) Addr() netip.Addr {
	a := netip.AddrFrom16(k.ip)
	if k.v4 {
		return a.Unmap()
	}
	return a
}

// String formats the key as an operator reads it: 10.1.2.3, 10.1.2.0/24 or
// 10.1.2.3:50123.
// MarshalText writes the key as String does, so JSON logs and APIs show
// the client, not an empty object.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k Key) String() string {
	a := k.Addr()
	switch {
	case k.bits != 0:
		return netip.PrefixFrom(a, int(k.bits)).String()
	case k.port != 0:
		return netip.AddrPortFrom(a, k.port).String()
	}
	return a.String()
}

// ParseKey reads a key back from its String form, for the admin API and
// snapshots.
func ParseKey(s string) (Key, error) {
	var k Key
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		k.ip, k.v4, k.bits = p.Addr().As16(), p.Addr().Is4(), uint8(p.Bits())
		return k, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a := ap.Addr().Unmap()
		k.ip, k.v4, k.port = a.As16(), a.Is4(), ap.Port()
		return k, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return k, fmt.Errorf("client key %q: want an address, address:port or prefix", s)
	}
	a = a.Unmap()
	k.ip, k.v4 = a.As16(), a.Is4()
	return k, nil
}

// Hash is a stable 64-bit hash of the key: the same in every process and on
// every machine, so instances with the same config choose alike.
func (k Key) Hash() uint64 {
	// FNV-1a over the fixed-size fields, then a finaliser so that keys
	// differing in one low byte spread over the whole word.
	h := uint64(14695981039346656037)
	for _, b := range k.ip {
		h = (h ^ uint64(b)) * 1099511628211
	}
	h = (h ^ uint64(k.port)) * 1099511628211
	h = (h ^ uint64(k.bits)) * 1099511628211
	return Mix(h)
}

// Mix is the splitmix64 finaliser: a cheap bijection with good avalanche,
// used to combine a key's hash with a backend's.
func Mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
