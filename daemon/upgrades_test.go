//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// Ten upgrades in a row under new-connection load, with 200 long-lived
// connections from 200 client addresses each carrying a checked stream
// both ways (some in bulk through splice, some chatty, some nearly
// idle): no connection cut, no byte wrong, no client moved (issue 34).
// The same, shorter, with a range steered by sk_lookup and in a cluster
// member.
func TestUpgradesMoveEveryConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("ten upgrades: not in -short")
	}
	// The processes after the first are grandchildren of this one; as
	// their subreaper it can wait for them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	for _, c := range []struct {
		name             string
		spec             rigSpec
		streams, upgrade int
	}{
		{"plain", rigSpec{child: "config"}, 200, 10},
		{"steered", rigSpec{steered: true, child: "config"}, 50, 3},
		{"cluster", rigSpec{cluster: true, child: "config"}, 50, 3},
	} {
		t.Run(c.name, func(t *testing.T) { upgradesUnderLoad(t, startRig(t, c.spec), c.streams, c.upgrade) })
	}
}

func upgradesUnderLoad(t *testing.T, r *rig, nstreams, upgrades int) {
	streams, owners := startStreams(t, r.listen, nstreams)
	load := startLoad(r.listen, 300)
	time.Sleep(time.Second) // every stream going before the waits count
	for _, s := range streams {
		s.ResetWait()
	}
	pid := os.Getpid()
	for i := range upgrades {
		next := upgradeOnce(t, r, pid, i == 0)
		lbtest.Eventually(t, 30*time.Second, fmt.Sprintf("upgrade %d: the old process %d gone", i+1, pid), func() bool {
			return i == 0 && closed(r.followed) || i > 0 && reaped(pid)
		})
		pid = next
	}
	defer reap(t, pid)
	failed, total := load.stop()
	if failed > 0 {
		t.Errorf("%d of %d new connections during the upgrades failed: %v", failed, total, load.firstErr())
	}
	var worst time.Duration
	var worstAt time.Time
	for _, s := range streams {
		if d, at := s.LongestWait(); d > worst {
			worst, worstAt = d, at
		}
	}
	for i, s := range streams {
		if sent, _, err := s.Stop(); err != nil {
			t.Errorf("stream %d (%d bytes): %v", i, sent, err)
		}
	}
	for src, was := range owners {
		if now := mustWho(t, src, r.listen); now != was {
			t.Errorf("client %s moved from %s to %s", src, was, now)
		}
	}
	t.Logf("%d streams across %d upgrades, %d new connections beside; the longest any stream waited: %v, until %s",
		nstreams, upgrades, total, worst, worstAt.Format("15:04:05.000"))
}

// upgradeOnce upgrades the process pid (this one, through the rig's
// signals, when self) and returns the new process's pid.
func upgradeOnce(t *testing.T, r *rig, pid int, self bool) int {
	t.Helper()
	if self {
		r.sigs <- syscall.SIGUSR2
	} else if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatalf("signal %d: %v", pid, err)
	}
	var next int
	lbtest.Eventually(t, 30*time.Second, "the new process answering the admin API", func() bool {
		next = adminPID(r)
		return next != 0 && next != pid && next != os.Getpid()
	})
	return next
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// reaped says whether process pid has exited, waiting for it if so.
func reaped(pid int) bool {
	var ws syscall.WaitStatus
	n, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return n == pid || errors.Is(err, syscall.ECHILD)
}

// startStreams opens n connections from n client addresses, each with a
// stream: one in ten in bulk, four chatty, the rest nearly idle.
func startStreams(t *testing.T, dst netip.AddrPort, n int) ([]*lbtest.Stream, map[string]string) {
	t.Helper()
	streams := make([]*lbtest.Stream, n)
	owners := map[string]string{}
	for i := range streams {
		src := lbtest.ClientIP(10 + i)
		c, err := lbtest.Connect(src, dst)
		if err != nil {
			t.Fatal(err)
		}
		owners[src] = c.Backend
		switch {
		case i%10 == 0:
			streams[i] = lbtest.StartStream(c, 32<<10, 10*time.Millisecond)
		case i%10 < 5:
			streams[i] = lbtest.StartStream(c, 200, 20*time.Millisecond)
		default:
			streams[i] = lbtest.StartStream(c, 10, 300*time.Millisecond)
		}
	}
	return streams, owners
}

// load opens short connections from its own clients until stopped,
// counting those that fail.
type load struct {
	stopped       chan struct{}
	wg            sync.WaitGroup
	total, failed atomic.Int64
	mu            sync.Mutex
	err           error
}

func startLoad(dst netip.AddrPort, clients int) *load {
	l := &load{stopped: make(chan struct{})}
	for w := range 4 {
		l.wg.Go(func() {
			for i := w; ; i += 4 {
				select {
				case <-l.stopped:
					return
				case <-time.After(5 * time.Millisecond):
				}
				l.total.Add(1)
				if _, err := lbtest.Who(lbtest.ClientIP(1000+i%clients), dst); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.err = cmpErr(l.err, err)
					l.mu.Unlock()
				}
			}
		})
	}
	return l
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func (l *load) stop() (failed, total int64) {
	close(l.stopped)
	l.wg.Wait()
	return l.failed.Load(), l.total.Load()
}

func (l *load) firstErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
