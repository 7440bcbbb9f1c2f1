package health

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type recorder struct {
	mu      sync.Mutex
	changes []Change
}

func (r *recorder) add(c Change) { r.mu.Lock(); r.changes = append(r.changes, c); r.mu.Unlock() }
func (r *recorder) last() (Change, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.changes) == 0 {
		return Change{}, 0
	}
	return r.changes[len(r.changes)-1], len(r.changes)
}

func listen(t *testing.T, host string, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// A host is up only when every port answers; rise and fall are counted.
func TestEveryPortMustAnswer(t *testing.T) {
	a := listen(t, "127.0.0.21", 0)
	port1 := a.Addr().(*net.TCPAddr).Port
	b := listen(t, "127.0.0.21", 0)
	port2 := b.Addr().(*net.TCPAddr).Port
	defer a.Close()

	var rec recorder
	var results sync.Map
	var failed atomic.Int32 // failed checks, counted before the change is reported
	c := New(Config{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 3,
		Probes:   []Probe{TCP{Ports: []int{port1, port2}}},
		OnChange: rec.add,
		OnResult: func(target string, err error, took time.Duration) {
			if err != nil {
				failed.Add(1)
			}
			results.Store(target, err == nil)
		},
	}, []Target{{Name: "cas1", Host: "127.0.0.21"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	lbtest.Eventually(t, 5*time.Second, "a first passing check", func() bool { v, ok := results.Load("cas1"); return ok && v.(bool) })
	if _, n := rec.last(); n != 0 {
		t.Fatalf("a healthy host reported a change on its first check")
	}
	b.Close() // the second port dies: the whole host must go down
	lbtest.Eventually(t, 5*time.Second, "down", func() bool { ch, n := rec.last(); return n == 1 && !ch.Up })
	// Counted, not timed: a first failed check can come right after the
	// close, so the time to go down is under three intervals (39.6 ms
	// once in CI against a 40 ms bound).
	if n := failed.Load(); n < 3 {
		t.Errorf("went down after %d failed checks; fall is 3", n)
	}
	ch, _ := rec.last()
	if ch.Err == nil || !strings.Contains(ch.Err.Error(), ":"+strconv.Itoa(port2)) {
		t.Errorf("down reason %v does not name port %d", ch.Err, port2)
	}
	b2 := listen(t, "127.0.0.21", port2)
	defer b2.Close()
	lbtest.Eventually(t, 5*time.Second, "up again", func() bool { ch, n := rec.last(); return n == 2 && ch.Up })
}

// A host never checked before is judged by its first check alone.
func TestFirstCheckDecides(t *testing.T) {
	// Nothing listens on this address and port.
	ln := listen(t, "127.0.0.22", 0)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var rec recorder
	c := New(Config{Interval: time.Hour, Timeout: 200 * time.Millisecond, Rise: 5, Fall: 5,
		Probes: []Probe{TCP{Ports: []int{port}}}, OnChange: rec.add},
		[]Target{{Name: "dead", Host: "127.0.0.22", State: NewState(true, false)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	lbtest.Eventually(t, 5*time.Second, "the first check to mark it down", func() bool { ch, n := rec.last(); return n == 1 && !ch.Up })
}

// A known-up host keeps its state through fewer than Fall failures.
func TestKnownStateNeedsFall(t *testing.T) {
	ln := listen(t, "127.0.0.23", 0)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var rec recorder
	var mu sync.Mutex
	n, changesAfterTwo := 0, -1
	c := New(Config{Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 3,
		Probes: []Probe{TCP{Ports: []int{port}}}, OnChange: rec.add,
		// OnResult runs before a result is judged, so at the third call
		// exactly two failures have been judged.
		OnResult: func(string, error, time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if n++; n == 3 {
				_, changesAfterTwo = rec.last()
			}
		}},
		[]Target{{Name: "x", Host: "127.0.0.23", State: NewState(true, true)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	lbtest.Eventually(t, 5*time.Second, "down after 3", func() bool { _, n := rec.last(); return n == 1 })
	cancel()
	<-done
	if changesAfterTwo != 0 {
		t.Fatalf("a known-up host changed state after 2 failures with fall=3")
	}
}

// probeFunc makes a Probe of a function, for results a real socket cannot
// be made to give on demand.
type probeFunc func() error

func (f probeFunc) Probe(context.Context, string) error { return f() }

// A probe that failed for want of a local resource (here EMFILE) judges
// nothing: the host stays up however many such results come in. A real
// refusal then takes it down at once (fall 1).
func TestLocalErrorsJudgeNothing(t *testing.T) {
	var mu sync.Mutex
	result := error(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)})
	calls := 0
	var rec recorder
	c := New(Config{Interval: 5 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1, OnChange: rec.add,
		Probes: []Probe{probeFunc(func() error { mu.Lock(); defer mu.Unlock(); calls++; return result })}},
		[]Target{{Name: "x", Host: "127.0.0.24", State: NewState(true, true)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	lbtest.Eventually(t, 5*time.Second, "20 local failures", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 20 })
	if _, n := rec.last(); n != 0 {
		t.Fatalf("a local EMFILE took the host down")
	}
	mu.Lock()
	result = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	mu.Unlock()
	lbtest.Eventually(t, 5*time.Second, "down on a refusal", func() bool { ch, n := rec.last(); return n == 1 && !ch.Up })
}
