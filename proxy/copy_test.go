//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// Messages on both sides of the bulk threshold, and small ones after the
// copy has moved to splice, all come back whole and in order.
func TestRelayAcrossTheBulkThreshold(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	l := serve(t, route(bs, ports[0], NetDialer{}))
	c, err := lbtest.Connect("127.8.0.1", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for _, size := range []int{1, 100, bufSize - 1, bufSize, bufSize + 1, 3 << 20, 7, 1} {
		msg := make([]byte, size)
		rand.Read(msg)
		errc := make(chan error, 1)
		go func() { _, err := c.Write(msg); errc <- err }()
		got := make([]byte, size)
		if _, err := io.ReadFull(c.R, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", size, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write of %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes came back different", size)
		}
	}
}

// An idle proxied connection costs the proxy its two sockets and no splice
// pipes (which would be four more descriptors and kernel buffers). The
// test backend echoes without splice, so every pipe here is the proxy's.
func TestIdleConnectionsHoldNoPipes(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	l := serve(t, route(bs, ports[0], NetDialer{}))
	pipes := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot list descriptors: %v", err)
		}
		n := 0
		for _, e := range ents {
			if target, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(target, "pipe:") {
				n++
			}
		}
		return n
	}
	const n = 40
	before := pipes()
	for i := range n {
		c, err := lbtest.Connect(lbtest.ClientIP(i), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// One message each way, so the copy has run in both directions.
		c.Write([]byte("x"))
		if _, err := io.ReadFull(c.R, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if held := pipes() - before; held > 0 {
		t.Fatalf("%d idle connections hold %d pipe descriptors, want none", n, held)
	}
}
