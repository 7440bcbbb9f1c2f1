//go:build linux

package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/config"
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
	ws := hostWarnings(cfg, r)
	if len(ws) != 1 || !strings.HasPrefix(ws[0], `lb.toml:7: pool.cas.backend.cas2.address: host name "cas2.invalid" does not resolve`) ||
		!strings.Contains(ws[0], "give the IP address") {
		t.Fatalf("warnings %q; want one, for cas2.invalid at line 7 (its table)", ws)
	}
}
