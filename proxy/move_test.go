//go:build linux

package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
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
	if moved := moveAll(t, old, next); moved != n {
		t.Fatalf("handed over %d of %d connections", moved, n)
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

// Half-closed connections move too, both ways round: one whose client
// sent its FIN while the backend streams on, and one whose backend did
// while the client sends on. Every byte after the move arrives in order,
// and the moved connection keeps its half-close deadline: with a short
// half_close_timeout it ends by that timeout in the new process.
func TestMoveHalfClosedConnections(t *testing.T) {
	hs := lbtest.StartHalfServer(t, "cas1", "127.0.0.11", 0)
	r1, r2 := halfRoute(hs, time.Minute), halfRoute(hs, time.Minute)
	old, next := serve(t, r1), serve(t, r2)
	const n = 10
	streams := make([]*lbtest.HalfStream, n)
	for i := range streams {
		c, err := lbtest.Connect(lbtest.ClientIP(i), old.Addr())
		if err != nil {
			t.Fatal(err)
		}
		mode := byte(lbtest.ClientFINs)
		if i%2 == 1 {
			mode = lbtest.BackendFINs
		}
		if streams[i], err = lbtest.StartHalfStream(c, mode); err != nil {
			t.Fatal(err)
		}
	}
	lbtest.Eventually(t, 5*time.Second, "every connection half-closed", func() bool {
		half := 0
		for _, c := range old.Conns() {
			if c.HalfClosed != "" {
				half++
			}
		}
		return half == n
	})
	if moved := moveAll(t, old, next); moved != n {
		t.Fatalf("handed over %d of %d half-closed connections", moved, n)
	}
	byClient := 0
	for _, c := range next.Conns() {
		if c.HalfClosed == ClientSentFIN {
			byClient++
		}
	}
	if len(next.Conns()) != n || byClient != n/2 {
		t.Fatalf("the new listener holds %d connections, %d half-closed by the client; want %d and %d", len(next.Conns()), byClient, n, n/2)
	}
	time.Sleep(100 * time.Millisecond) // traffic after the move
	hs.Finish()
	var sent int64
	for i, s := range streams {
		got, wait, err := s.Stop()
		if err != nil {
			t.Errorf("stream %d (%d bytes): %v", i, got, err)
		}
		if got == 0 {
			t.Errorf("stream %d: no bytes went its open way", i)
		}
		if i%2 == 1 {
			sent += got
		}
		t.Logf("stream %d: %d bytes, longest wait %v", i, got, wait)
	}
	lbtest.Eventually(t, 5*time.Second, "the server checked every byte the clients sent", func() bool {
		got, _ := hs.Checked()
		return got == sent
	})
	if _, err := hs.Checked(); err != nil {
		t.Fatal(err)
	}
}

// A half-closed connection moved keeps the deadline its half-close was
// given, not a new one: it ends by half_close_timeout in the new process.
func TestMovedHalfCloseKeepsItsDeadline(t *testing.T) {
	hs := lbtest.StartHalfServer(t, "cas1", "127.0.0.11", 0)
	var logs lbtest.Buffer
	old, next := serve(t, halfRoute(hs, 700*time.Millisecond)), serveLogged(t, halfRoute(hs, time.Hour), &logs)
	c, err := lbtest.Connect("127.5.0.1", old.Addr())
	if err != nil {
		t.Fatal(err)
	}
	s, err := lbtest.StartHalfStream(c, lbtest.BackendFINs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	lbtest.Eventually(t, 5*time.Second, "the connection half-closed", func() bool {
		cs := old.Conns()
		return len(cs) == 1 && cs[0].HalfClosed == BackendSentFIN
	})
	if moveAll(t, old, next) != 1 {
		t.Fatal("the half-closed connection did not move")
	}
	lbtest.Eventually(t, 5*time.Second, "the moved connection ended by its half-close timeout", func() bool {
		return next.Active() == 0 && strings.Contains(logs.String(), "termination="+string(EndHalfCloseTimeout))
	})
}

// halfRoute is a route to one HalfServer with the half-close timeout
// given.
func halfRoute(hs *lbtest.HalfServer, halfClose time.Duration) *Route {
	return &Route{
		Pool:  pool.New("cas", config.Hash, []pool.Spec{{Name: hs.Name, Host: "127.0.0.11", Weight: 1}}),
		Table: affinity.NewTable(affinity.Config{}), Port: hs.Port(), ConnectTimeout: time.Second, Retries: 2,
		HalfCloseTimeout: halfClose,
	}
}

// moveAll pauses old's connections and hands them to next, as an
// upgrade does between two processes, and returns how many moved.
func moveAll(t *testing.T, old, next *Listener) int {
	t.Helper()
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
	if err != nil {
		t.Fatalf("hand-over of %d paused connections: %v", len(parcels), err)
	}
	if err := <-took; err != nil {
		t.Fatal(err)
	}
	return moved
}
