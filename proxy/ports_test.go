//go:build linux

package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/steer"
)

// A listener of a port range forwards each connection to the port its
// client dialled on the client's pinned backend, and every port of the
// range shares the one affinity table; this holds with a socket per port
// and with one socket steered by sk_lookup alike.
func TestRangeForwardsDialledPort(t *testing.T) {
	for _, mode := range []config.RangeMode{config.RangePerPort, config.RangeSkLookup} {
		t.Run(mode.String(), func(t *testing.T) {
			var bs []*lbtest.Backend
			for i, host := range []string{"127.0.0.31", "127.0.0.32", "127.0.0.33"} {
				b := lbtest.NewBackend(t, "cas"+string(rune('1'+i)), host)
				for _, port := range []int{23010, 23050} {
					if err := b.Listen(port); err != nil {
						t.Fatal(err)
					}
				}
				bs = append(bs, b)
			}
			l, err := Listen(context.Background(), "range", "127.0.0.30:23000-23063", mode, 0, slog.New(slog.DiscardHandler))
			if errors.Is(err, steer.ErrNotAllowed) {
				t.Skipf("sk_lookup is not allowed here (run as root): %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, how := l.Ports(); how != mode.String() {
				t.Fatalf("ports taken by %s, want %s", how, mode)
			}
			r := route(bs, 0, nil)
			r.Name = "range"
			l.SetRoute(r)
			done := make(chan struct{})
			go func() { l.Serve(); close(done) }()
			defer func() { l.Close(); <-done; l.Wait(context.Background()) }()

			seen := map[string]bool{}
			for i := range 30 {
				src := lbtest.ClientIP(i)
				first, err := lbtest.Who(src, netip.MustParseAddrPort("127.0.0.30:23010"))
				if err != nil {
					t.Fatal(err)
				}
				second, err := lbtest.Who(src, netip.MustParseAddrPort("127.0.0.30:23050"))
				if err != nil || second != first {
					t.Fatalf("client %s: 23010 reached %s, 23050 reached %q (%v)", src, first, second, err)
				}
				seen[first] = true
			}
			if len(seen) < 2 {
				t.Fatalf("30 clients all on %v: the range does not balance", seen)
			}
			// Nothing listens on 23020 at any backend: a connection there is
			// refused, so the proxy did not send it to a port of its own choosing.
			c, err := lbtest.Dial("127.9.0.1", netip.MustParseAddrPort("127.0.0.30:23020"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := io.ReadFull(c, make([]byte, 1)); n != 0 {
				t.Fatal("a connection to a port no backend listens on was answered")
			}
		})
	}
}
