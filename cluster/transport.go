package cluster

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/stickylb/stickylb/locks"

	"github.com/hashicorp/memberlist"
)

// maxStreams bounds the gossip port's open TCP streams (whole-table
// syncs, reliable messages), as the admin port's connections are
// bounded: a flood of idle connections from anyone who reaches the port
// could otherwise take the file descriptors the proxy needs. A stream
// over the bound is closed at once and counted; memberlist retries.
// maxStreamsPerSource keeps one address from taking them all: a member
// opens one or two at a time.
const (
	maxStreams          = 64
	maxStreamsPerSource = 8
)

// boundedTransport is memberlist's own TCP/UDP transport with its
// incoming streams bounded.
type boundedTransport struct {
	*memberlist.NetTransport
	streams  chan net.Conn
	mu       locks.Mutex
	open     int            // streams passed on and not yet closed
	bySource map[string]int // the same, by source address
	done     chan struct{}  // Shutdown has begun: pass memberlist no more streams
	stop     sync.Once
	refused  *atomic.Uint64
	netDone  chan struct{} // the transport under it has stopped: feed may return
	netStop  sync.Once
	feedDone chan struct{}
}

func newBoundedTransport(nt *memberlist.NetTransport, refused *atomic.Uint64) *boundedTransport {
	t := &boundedTransport{NetTransport: nt, streams: make(chan net.Conn),
		done: make(chan struct{}), refused: refused, netDone: make(chan struct{}), feedDone: make(chan struct{}), bySource: map[string]int{}}
	go t.feed()
	return t
}

// feed passes memberlist the streams there is room for. Once Shutdown
// has begun it closes what still comes, and it reads on until the
// transport under it has stopped: that transport's accept loop may be
// handing it a stream, and the transport's Shutdown waits for that loop
// (a member stopped with a peer's stream arriving hung there for good).
func (t *boundedTransport) feed() {
	defer close(t.feedDone)
	in := t.NetTransport.StreamCh()
	for {
		select {
		case c := <-in:
			t.pass(c)
		case <-t.netDone:
			return
		}
	}
}

// pass hands memberlist one stream, or closes it: no room, or stopping.
func (t *boundedTransport) pass(c net.Conn) {
	select {
	case <-t.done:
		c.Close()
		return
	default:
	}
	src := sourceOf(c)
	if !t.take(src) {
		c.Close()
		t.refused.Add(1)
		return
	}
	select {
	case t.streams <- &slotConn{Conn: c, free: func() { t.free(src) }}:
	case <-t.done:
		c.Close()
		t.free(src)
	}
}

// take reserves a slot for a stream from src, if there is one.
func (t *boundedTransport) take(src string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open >= maxStreams || t.bySource[src] >= maxStreamsPerSource {
		return false
	}
	t.open++
	t.bySource[src]++
	return true
}

func (t *boundedTransport) free(src string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open--
	if t.bySource[src]--; t.bySource[src] <= 0 {
		delete(t.bySource, src)
	}
}

// sourceOf is the address a stream comes from.
func sourceOf(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

func (t *boundedTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *boundedTransport) Shutdown() error {
	t.stop.Do(func() { close(t.done) })
	err := t.NetTransport.Shutdown()
	t.netStop.Do(func() { close(t.netDone) })
	<-t.feedDone
	return err
}

// slotConn gives its slot back when memberlist closes it.
type slotConn struct {
	net.Conn
	free func()
	once sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(c.free)
	return c.Conn.Close()
}
