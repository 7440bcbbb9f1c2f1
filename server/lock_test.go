//go:build linux

package server

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

// within runs f and ends the test binary if it has not returned after
// d: a deadlock holds the server's lock, so the test's clean-up (which
// even a panic runs) would hang too. It prints every goroutine's stack,
// the deadlock's two sides among them, and exits.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "--- FAIL: %s: %s has not returned after %s: deadlocked\n%s\n", t.Name(), what, d, buf)
		os.Exit(1)
	}
}

// A binary upgrade whose new process fails hands everything back: the
// old process serves on the same sockets, keeps its pins, and a cluster
// member rejoins and is ready again. Resume held s.mu while the new
// member asked for the pools, which locked s.mu again: the member never
// came back and /readyz never answered.
func TestFailedUpgradeResumes(t *testing.T) {
	for _, clustered := range []bool{false, true} {
		name := map[bool]string{false: "alone", true: "cluster member"}[clustered]
		t.Run(name, func(t *testing.T) {
			var srv *Server
			var addr func() netip.AddrPort
			if clustered {
				f := newFleet(t, 1)
				srv = f.members[0]
				addr = func() netip.AddrPort { return f.addr(0, 0) }
			} else {
				r := newRig(t, 1, "")
				srv = r.srv
				addr = func() netip.AddrPort { return r.addr(0) }
			}
			client := "127.8.1.1"
			first := mustWho(t, client, addr())
			var files []*os.File
			within(t, 10*time.Second, "Handover", func() {
				var err error
				if files, err = srv.Handover(); err != nil {
					t.Error(err)
				}
			})
			within(t, 10*time.Second, "Resume", func() {
				if err := srv.Resume(files); err != nil {
					t.Error(err)
				}
			})
			if t.Failed() {
				t.FailNow()
			}
			lbtest.Eventually(t, 10*time.Second, "ready again after the failed upgrade", srv.Ready)
			if clustered && srv.Cluster() == nil {
				t.Fatal("the member did not rejoin its cluster")
			}
			if again := mustWho(t, client, addr()); again != first {
				t.Fatalf("client moved from %s to %s across a failed upgrade", first, again)
			}
		})
	}
}

// A hand-over while the cluster is busy (members sending every new pin)
// returns: Leave waits for the member's own goroutines, which must not
// wait on the server's lock that Handover holds.
func TestHandoverWhileClusterBusy(t *testing.T) {
	f := newFleet(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 2000; i++ {
				lbtest.Who(lbtest.ClientIP(w*2000+i), f.addr(i%2, 0))
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(200 * time.Millisecond) // let the load start: pacing only
	var files []*os.File
	within(t, 15*time.Second, "Handover of a busy member", func() {
		var err error
		if files, err = f.members[0].Handover(); err != nil {
			t.Error(err)
		}
	})
	within(t, 15*time.Second, "Resume of a busy member", func() {
		if err := f.members[0].Resume(files); err != nil {
			t.Error(err)
		}
	})
	lbtest.Eventually(t, 10*time.Second, "member ready after resuming", f.members[0].Ready)
}

// A member that resumes after a hand-over failed (the new binary exited
// at once) stays ready: its pins are whole, so its rejoin is no first
// sync and /readyz must not say "syncing" meanwhile, which would take it
// out of its router's rotation. Found by the soak (issue 30, seed 4):
// the resumed member answered 503 until its new cluster member joined.
func TestResumeAfterFailedHandoverStaysReady(t *testing.T) {
	f := newFleet(t, 2)
	lbtest.Eventually(t, 10*time.Second, "both members ready", func() bool { return f.members[0].Ready() && f.members[1].Ready() })
	files, err := f.members[0].Handover()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.members[0].Resume(files); err != nil {
		t.Fatal(err)
	}
	if !f.members[0].Ready() {
		t.Fatal("not ready at once after resuming: it waits for a first sync it does not need")
	}
}

// A member's receive path never waits on its server's lock: with member
// 0's lock held, as a reload holds it while it binds listeners, a pin and
// a drain made at member 1 still reach member 0. Both took s.mu before
// (the pools, and the decisions), so a slow bind stalled gossip.
func TestGossipDoesNotWaitOnTheServerLock(t *testing.T) {
	f := newFleet(t, 2)
	lbtest.Eventually(t, 10*time.Second, "both members ready", func() bool { return f.members[0].Ready() && f.members[1].Ready() })
	s0 := f.members[0]
	s0.mu.Lock()
	locked := true
	defer func() {
		if locked {
			s0.mu.Unlock()
		}
	}()
	client := "127.8.2.1"
	at1 := mustWho(t, client, f.addr(1, 0))
	lbtest.Eventually(t, 5*time.Second, "member 1's pin at member 0 while its lock is held", func() bool { return f.backend(0, client) == at1 })
	if _, err := f.members[1].SetState("cas", at1, pool.Drain, 0); err != nil {
		t.Fatal(err)
	}
	b, err := s0.backendNamed("cas", at1)
	if err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 5*time.Second, "member 1's drain at member 0 while its lock is held", func() bool { return b.AdminState() == pool.Drain })
	s0.mu.Unlock()
	locked = false
}
