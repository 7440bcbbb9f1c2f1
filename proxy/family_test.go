//go:build linux

package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// In transparent mode an IPv6 client cannot be the source of a
// connection to an IPv4 CAS. That is this host's config, not the CAS's
// fault: the clients are refused as a local error (EAFNOSUPPORT), the
// CAS is not marked down and no connect failure is counted against it.
// Before, three such clients took a healthy CAS down within a millisecond.
func TestTransparentWrongFamilyIsLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("transparent sockets need CAP_NET_ADMIN (CI runs as root)")
	}
	if err := CheckTransparent(); err != nil {
		t.Skip(err)
	}
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	r := route(bs, ports[0], TransparentDialer{})
	r.PassiveFall = 1
	obs := &recorder{}
	r.Observer = obs.observer()
	var logs lbtest.Buffer
	l, err := Listen(context.Background(), &config.Listener{Name: "v6", Listen: "[::1]:0", RangeMode: config.RangeAuto}, 30*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	r.Name = "v6"
	l.SetRoute(r)
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	defer func() { l.Close(); <-done }()
	addr := netip.MustParseAddrPort(l.Addr().String())
	for range 5 {
		c, err := lbtest.Dial("::1", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("an IPv6 client reached an IPv4 CAS through a transparent dial")
		}
		c.Close()
	}
	lbtest.Eventually(t, 3*time.Second, "5 local errors", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.errnos) == 5
	})
	b := r.Pool.Backend("cas1")
	if !b.Healthy() || len(obs.reasons) > 0 {
		t.Fatalf("the CAS was blamed: healthy %v, connect failures %v", b.Healthy(), obs.reasons)
	}
	if obs.errnos[0] != "EAFNOSUPPORT" || !strings.Contains(logs.String(), "address family") {
		t.Fatalf("local errors %v, log:\n%s", obs.errnos, logs.String())
	}
}
