//go:build linux

package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// A listener's sockets taken over by another listener (a binary
// upgrade) keep the connections that arrived in between: a client that
// connects after the old listener closed, before the new one serves, is
// served by the new one. Addresses match in the config's form and the
// kernel's ("0.0.0.0" and "[::]").
func TestInheritedSockets(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	addr := lbtest.FreeAddr(t, "127.0.0.1")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	old, err := Listen(context.Background(), &config.Listener{Name: "l", Listen: addr, RangeMode: config.RangeAuto}, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	files, err := old.Files()
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	c, err := lbtest.Dial("127.4.9.1", netip.MustParseAddrPort(addr)) // queued in the kernel meanwhile
	if err != nil {
		t.Fatalf("a connection between the two listeners was refused: %v", err)
	}
	defer c.Close()
	socks, err := NewSockets(files)
	if err != nil {
		t.Fatal(err)
	}
	defer socks.Close()
	l, err := socks.Listen(context.Background(), &config.Listener{Name: "l", Listen: addr, RangeMode: config.RangeAuto}, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	l.SetRoute(route(bs, ports[0], NetDialer{}))
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	defer func() { l.Close(); <-done }()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "cas1" {
		t.Fatalf("the queued connection read %q, %v; want the backend's greeting", buf[:n], err)
	}
	for in, want := range map[string]string{"0.0.0.0:135": "[::]:135", ":135": "[::]:135", "[::]:135": "[::]:135", "10.0.0.5:135": "10.0.0.5:135"} {
		if got := sameAddr(in); got != want {
			t.Errorf("sameAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
