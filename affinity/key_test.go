package affinity

import (
	"net/netip"
	"testing"

	"github.com/stickylb/stickylb/config"
)

// Each key kind keys a client as documented, keys read back from their
// text, clients of one /24 share a src-net key and two addresses never
// share a src-ip key.
func TestKeys(t *testing.T) {
	cases := []struct {
		keyer  Keyer
		client string
		want   string
	}{
		{Keyer{}, "10.1.2.3:5000", "10.1.2.3"},
		{Keyer{}, "[::ffff:10.1.2.3]:5000", "10.1.2.3"},
		{Keyer{Kind: config.SrcNet}, "10.1.2.3:5000", "10.1.2.0/24"},
		{Keyer{Kind: config.SrcNet, V4Prefix: 16}, "10.1.2.3:5000", "10.1.0.0/16"},
		{Keyer{Kind: config.SrcNet}, "[2001:db8:1:2:3::4]:5000", "2001:db8:1:2::/64"},
		{Keyer{Kind: config.SrcNet, V6Prefix: 48}, "[2001:db8:1:2:3::4]:5000", "2001:db8:1::/48"},
		{Keyer{Kind: config.Connection}, "10.1.2.3:5000", "10.1.2.3:5000"},
		{Keyer{}, "[2001:db8::1]:5000", "2001:db8::1"},
	}
	for _, c := range cases {
		k := c.keyer.Key(netip.MustParseAddrPort(c.client))
		if k.String() != c.want {
			t.Errorf("%v key of %s = %s, want %s", c.keyer.Kind, c.client, k, c.want)
		}
		back, err := ParseKey(k.String())
		if err != nil || back != k {
			t.Errorf("ParseKey(%s) = %v, %v; want the same key back", k, back, err)
		}
	}
	a := Keyer{Kind: config.SrcNet}.Key(netip.MustParseAddrPort("10.1.2.3:1"))
	b := Keyer{Kind: config.SrcNet}.Key(netip.MustParseAddrPort("10.1.2.200:9"))
	if a != b || a.Hash() != b.Hash() {
		t.Errorf("two clients of one /24 have different src-net keys")
	}
	if (Keyer{}).Key(netip.MustParseAddrPort("10.1.2.3:1")) == (Keyer{}).Key(netip.MustParseAddrPort("10.1.2.4:1")) {
		t.Errorf("two addresses share a src-ip key")
	}
}

// The hash must be the same in every process: it decides which backend a
// new client gets, and instances must agree. These values are fixed.
func TestHashIsStable(t *testing.T) {
	k := Keyer{}.Key(netip.MustParseAddrPort("10.1.2.3:5000"))
	if got := k.Hash(); got != 0xd588ea5c8c724018 {
		t.Fatalf("hash of 10.1.2.3 = %#x; changing it moves every client of every deployment on upgrade", got)
	}
	if got, again := k.Hash(), (Keyer{}).Key(netip.MustParseAddrPort("10.1.2.3:7")).Hash(); got != again {
		t.Fatalf("src-ip hash depends on the port")
	}
	if Mix(1) == Mix(2) || Mix(0) != 0 {
		t.Fatalf("Mix is not the splitmix64 finaliser")
	}
}

// IPv4 keys are stored in 64 bits; every IPv4 key of every kind must come
// back the same, and no two may share a form.
func TestCompactKeysAreExact(t *testing.T) {
	keyers := []Keyer{{}, {Kind: config.SrcNet}, {Kind: config.SrcNet, V4Prefix: 16}, {Kind: config.Connection}}
	seen := map[uint64]Key{}
	for _, kr := range keyers {
		for _, s := range []string{"10.1.2.3:5000", "10.1.2.3:5001", "255.255.255.255:65535", "0.0.0.1:1", "[::ffff:10.1.2.4]:5000"} {
			k := kr.Key(netip.MustParseAddrPort(s))
			c, ok := k.compact()
			if !ok {
				t.Fatalf("%v key of %s has no compact form", kr.Kind, s)
			}
			if back := fromCompact(c); back != k {
				t.Errorf("%v key of %s: compact round trip gave %v", kr.Kind, s, back)
			}
			if other, dup := seen[c]; dup && other != k {
				t.Errorf("keys %v and %v share the compact form %#x", other, k, c)
			}
			seen[c] = k
		}
	}
	if _, ok := (Keyer{}).Key(netip.MustParseAddrPort("[2001:db8::1]:1")).compact(); ok {
		t.Errorf("an IPv6 key claims a 64-bit form")
	}
}

// A Keyer recognises its own keys only: a key written under another kind
// or prefix is not taken for one of the pool's clients.
func TestKeyerMakes(t *testing.T) {
	client := netip.MustParseAddrPort("10.1.2.3:5000")
	kinds := []Keyer{{}, {Kind: config.SrcNet}, {Kind: config.SrcNet, V4Prefix: 16}, {Kind: config.Connection}}
	for i, a := range kinds {
		for j, b := range kinds {
			if got := a.Makes(b.Key(client)); got != (i == j) {
				t.Errorf("keyer %d makes keyer %d's key: %v", i, j, got)
			}
		}
	}
}

// Every kind of key reads back from its binary form, and a truncated one
// is an error.
func TestKeyBinaryRoundTrip(t *testing.T) {
	for _, s := range []string{"10.1.2.3", "10.1.2.0/24", "10.1.2.3:50123", "2001:db8::1", "2001:db8::/64", "[2001:db8::1]:443"} {
		k, err := ParseKey(s)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := k.AppendBinary([]byte{0xAA})
		got, n, err := ReadKey(b[1:])
		if err != nil || got != k || n != len(b)-1 {
			t.Errorf("%s: read back %v (%d bytes), %v", s, got, n, err)
		}
	}
	if _, _, err := ReadKey([]byte{1, 24, 0, 0, 10}); err == nil {
		t.Error("a truncated key read without error")
	}
}
