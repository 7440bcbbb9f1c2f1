//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/steer"
)

// A range steered by sk_lookup is handed to a new listener, as to the
// new process at an upgrade (issue 34: it was restarted instead): the
// same socket and steering, the program swapped for the new config's
// ports. A connection that arrives while neither listener accepts waits
// in the socket's queue and is served by the new one.
func TestSteeredRangeHandsOver(t *testing.T) {
	bs, _ := lbtest.StartBackends(t, []string{"127.0.0.11"}, 0)
	b := bs[0]
	for _, port := range []int{23310, 23368} {
		if err := b.Listen(port); err != nil {
			t.Fatal(err)
		}
	}
	lc := &config.Listener{Name: "range", Listen: "127.0.0.51:23300-23363", RangeMode: config.RangeSkLookup}
	old, err := listen(context.Background(), lc, 0, slog.New(slog.DiscardHandler), nil, nil)
	if errors.Is(err, steer.ErrNotAllowed) {
		t.Skipf("sk_lookup is not allowed here (run as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := route(bs, 0, nil)
	r.Name = "range"
	old.SetRoute(r)
	done := make(chan struct{})
	go func() { old.Serve(); close(done) }()
	port := netip.MustParseAddrPort("127.0.0.51:23310")
	if who, err := lbtest.Who("127.9.5.1", port); err != nil || who != "cas1" {
		t.Fatalf("before the hand-over, a port of the range reached %q (%v)", who, err)
	}
	files, err := old.Files()
	if err != nil {
		t.Fatal(err)
	}
	old.Close() // the old process lets go; its duplicates keep socket and program
	<-done
	waiting, err := lbtest.Dial("127.9.5.2", port) // queued: nobody accepts now
	if err != nil {
		t.Fatalf("a connection during the hand-over: %v", err)
	}
	defer waiting.Close()
	socks, err := NewSockets(files)
	if err != nil {
		t.Fatal(err)
	}
	defer socks.Close()
	wider := &config.Listener{Name: "range", Listen: "127.0.0.51:23300-23370", RangeMode: config.RangeSkLookup}
	next, err := socks.Listen(context.Background(), wider, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, mode := next.Ports(); mode != "sk-lookup" {
		t.Fatalf("the new listener takes the range by %s, want sk-lookup", mode)
	}
	next.SetRoute(r)
	done = make(chan struct{})
	go func() { next.Serve(); close(done) }()
	defer func() { next.Close(); <-done; next.Wait(context.Background()) }()
	if who, err := lbtest.Who("127.9.5.3", netip.MustParseAddrPort("127.0.0.51:23368")); err != nil || who != "cas1" {
		t.Fatalf("after the hand-over, a port of the range reached %q (%v)", who, err)
	}
	waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(waiting).ReadString('\n'); err != nil || line != "cas1\n" {
		t.Fatalf("the connection queued during the hand-over: %q %v", line, err)
	}
	waiting.Close() // before next.Wait, which waits for it
}
