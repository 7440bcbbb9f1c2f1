package cluster

import (
	"io"
	"log"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// A member that stops while a peer's stream is arriving stops: the
// transport under the bound keeps being read until it has shut down.
// Before, the bound stopped reading at once, memberlist's accept loop
// hung handing it the next stream, and the transport's Shutdown waited
// for that loop for good (a cluster test hung 5 minutes beside a busy
// build). Here one stream waits for memberlist, which never reads it,
// and a second waits in the accept loop when Shutdown begins.
func TestShutdownWithStreamsArriving(t *testing.T) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0,
		Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	bt := newBoundedTransport(nt, new(atomic.Uint64))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort()))
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // both streams accepted: one held by the bound, one by the accept loop
	stopped := make(chan error, 1)
	go func() { stopped <- bt.Shutdown() }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the transport did not shut down with streams arriving")
	}
}
