//go:build linux

package proxy

import (
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// Open connections move from one listener to another (as from the old
// process to the new at an upgrade) with their streams going both ways,
// idle and in bulk (splice): no byte lost, duplicated or reordered, each
// with its id, start and counts; none left behind.
func TestMoveConnections(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	// A long half-close timeout: a stream's last bytes may take a while
	// to come back on a loaded machine after its client's FIN.
	r1, r2 := route(bs, ports[0], nil), route(bs, ports[0], nil)
	r1.HalfCloseTimeout, r2.HalfCloseTimeout = time.Minute, time.Minute
	old, next := serve(t, r1), serve(t, r2)
	const n = 30
	streams := make([]*lbtest.Stream, n)
	starts := map[uint64]time.Time{}
	for i := range streams {
		c, err := lbtest.Connect(lbtest.ClientIP(i), old.Addr())
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0: // bulk: fills the relay's buffer, so it splices
			streams[i] = lbtest.StartStream(c, 32<<10, 5*time.Millisecond)
		case 1: // chatty
			streams[i] = lbtest.StartStream(c, 100, time.Millisecond)
		default: // mostly idle
			streams[i] = lbtest.StartStream(c, 10, 50*time.Millisecond)
		}
	}
	lbtest.Eventually(t, 5*time.Second, "every stream going", func() bool {
		for _, s := range streams {
			if s.Sent() == 0 {
				return false
			}
		}
		return true
	})
	for _, c := range old.Conns() {
		starts[c.ID] = c.Since
	}
	parcels := old.Pause(time.Now().Add(2 * time.Second))
	mine, theirs, err := MoveSockets()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	took := make(chan error, 1)
	go func() {
		defer theirs.Close()
		uc, err := FileUnixConn(theirs)
		if err != nil {
			took <- err
			return
		}
		defer uc.Close()
		_, err = Receive(uc, map[string]*Listener{"test": next})
		took <- err
	}()
	moved, err := HandOver(mine, parcels)
	if err != nil || moved != n {
		t.Fatalf("handed over %d of %d connections (%d paused): %v", moved, n, len(parcels), err)
	}
	if err := <-took; err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 5*time.Second, "the old listener empty", func() bool { return old.Active() == 0 })
	got := next.Conns()
	if len(got) != n {
		t.Fatalf("the new listener holds %d connections, want %d", len(got), n)
	}
	for _, c := range got {
		if !c.Since.Equal(starts[c.ID]) {
			t.Errorf("connection %d: started %v here, %v before the move", c.ID, c.Since, starts[c.ID])
		}
	}
	time.Sleep(200 * time.Millisecond) // traffic after the move
	for i, s := range streams {
		sent, pause, err := s.Stop()
		if err != nil {
			t.Errorf("stream %d (%d bytes): %v", i, sent, err)
		}
		t.Logf("stream %d: %d bytes, longest wait %v", i, sent, pause)
	}
	if c, err := lbtest.Connect(lbtest.ClientIP(n), next.Addr()); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}
	if next.accepted.Load() <= n {
		t.Errorf("the new listener numbers its next connection %d, at or below a moved one's", next.accepted.Load())
	}
}
