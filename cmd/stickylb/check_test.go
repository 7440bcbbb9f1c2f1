//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// A backend given by a host name that does not resolve now is warned
// about with its file, line and key; one that resolves is not. The
// resolver asks a loopback port where no DNS server listens, so names
// outside /etc/hosts fail without leaving this host.
func TestCheckWarnsUnresolvedHost(t *testing.T) {
	src := "[listener.rpc]\nlisten = \"127.0.0.1:60001\"\npool = \"cas\"\n" +
		"[pool.cas.backend.cas1]\naddress = \"localhost\"\n" +
		"[pool.cas.backend.cas2]\naddress = \"cas2.invalid\"\n" +
		"[pool.cas.backend.cas3]\naddress = \"127.0.0.13\"\n"
	cfg, err := config.Parse("lb.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close() // nothing listens there now: queries are refused at once
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dead)
	}}
	_, ws := hostProblems(cfg, r)
	if len(ws) != 1 || !strings.HasPrefix(ws[0], `lb.toml:7: pool.cas.backend.cas2.address: host name "cas2.invalid" does not resolve`) ||
		!strings.Contains(ws[0], "give the IP address") {
		t.Fatalf("warnings %q; want one, for cas2.invalid at line 7 (its table)", ws)
	}
}

// check says when the snapshot's disk cannot hold full tables: on a
// 1 MiB file system, 100,000 pins (about 40 MB) are warned about with the
// file, line and key; 1,000 pins are not.
func TestCheckWarnsSmallDisk(t *testing.T) {
	dir := lbtest.SmallDisk(t, 1<<20)
	for _, c := range []struct {
		max  int
		warn bool
	}{{100_000, true}, {1000, false}} {
		src := fmt.Sprintf("[global]\nsnapshot_file = %q\n[listener.rpc]\nlisten = \"127.0.0.1:60001\"\npool = \"cas\"\n"+
			"[pool.cas.affinity]\nmax_entries = %d\n[pool.cas.backend.cas1]\naddress = \"127.0.0.13\"\n", filepath.Join(dir, "pins.json"), c.max)
		cfg, err := config.Parse("lb.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		_, ws := hostProblems(cfg, net.DefaultResolver)
		got := len(ws) == 1 && strings.HasPrefix(ws[0], "lb.toml:2: global.snapshot_file: ") && strings.Contains(ws[0], "need about 41 MB")
		if c.warn != got || (!c.warn && len(ws) != 0) {
			t.Fatalf("max_entries %d: warnings %q; want a warning: %v", c.max, ws, c.warn)
		}
	}
}
