//go:build linux

package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/metrics"
	"github.com/stickylb/stickylb/proxy"
	"github.com/stickylb/stickylb/steer"
)

// envChild makes the test binary a daemon of its own, the binary an
// upgrade starts: "exit" exits at once (a broken new binary), anything
// else is the config file to run.
const envChild = "STICKYLB_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if c := os.Getenv(envChild); c != "" {
		os.Exit(child(c))
	}
	goleak.VerifyTestMain(m, lbtest.IgnoreMemberlistProbes()...)
}

// child runs the daemon as `stickylb run` does; "die:FILE" says it
// serves, as one that takes connections, then dies before it takes them.
func child(path string) int {
	if path == "exit" {
		return 3
	}
	path, die := strings.CutPrefix(path, "die:")
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, Signals...)
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	h, err := Inherited()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	d, err := Start(Options{ConfigPath: path, Config: cfg, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}, h)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer d.Close()
	d.Serve()
	if die {
		h.ready.Write(fmt.Appendf(nil, "ready conns/%d\n", proxy.MoveVersion))
		os.Exit(4)
	}
	d.Ready()
	d.Follow(sigs)
	return 0
}

// rig is a daemon in this process in front of real backends, told its
// signals on a channel.
type rig struct {
	t        *testing.T
	path     string
	listen   netip.AddrPort
	admin    string
	log      *lbtest.Buffer
	d        *Daemon
	sigs     chan os.Signal
	followed chan struct{}
}

// newRig starts a daemon whose upgrades start this test binary, as
// child (exit or the config); with a cluster of one member if cluster.
func newRig(t *testing.T, cluster bool, childMode string) *rig {
	return startRig(t, rigSpec{cluster: cluster, child: childMode})
}

// rigSpec is a rig's shape: a cluster of one member, a listener of two
// ports steered by sk_lookup (at the backends' own ports, 127.0.0.1:P,Q),
// and what the upgrade's new process does (see child).
type rigSpec struct {
	cluster, steered bool
	child            string
}

func startRig(t *testing.T, spec rigSpec) *rig {
	t.Helper()
	cluster, childMode := spec.cluster, spec.child
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 2)
	dir := t.TempDir()
	r := &rig{t: t, path: filepath.Join(dir, "lb.toml"), log: &lbtest.Buffer{}, sigs: make(chan os.Signal, 4), followed: make(chan struct{})}
	r.listen = netip.MustParseAddrPort(lbtest.FreeAddr(t, "127.0.0.1"))
	listener := fmt.Sprintf("[listener.cas]\nlisten = %q\npool = \"cas\"\nbackend_port = %d\n", r.listen, ports[0])
	if spec.steered {
		r.listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ports[0]))
		listener = fmt.Sprintf("[listener.cas]\nlisten = \"127.0.0.1:%d,%d\"\nrange_mode = \"sk-lookup\"\npool = \"cas\"\n", ports[0], ports[1])
	}
	r.admin = lbtest.FreeAddr(t, "127.0.0.1")
	src := fmt.Sprintf("[global]\nsnapshot_file = %q\ndrain_timeout = \"10s\"\n[admin]\nlisten = %q\nsocket = %q\n",
		filepath.Join(dir, "pins.json"), r.admin, filepath.Join(dir, "admin.sock")) + listener
	for _, b := range bs {
		src += fmt.Sprintf("[pool.cas.backend.%s]\naddress = %q\n", b.Name, b.Host)
	}
	if cluster {
		g := lbtest.FreeAddr(t, "127.0.2.1")
		src += fmt.Sprintf("[cluster]\nbind = %q\npeers = [%q]\nnode_name = \"d1\"\nsync_timeout = \"1s\"\n", g, g)
	}
	if err := os.WriteFile(r.path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	switch childMode {
	case "config":
		childMode = r.path
	case "die":
		childMode = "die:" + r.path
	}
	t.Setenv(envChild, childMode)
	cfg, err := config.Load(r.path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	r.d, err = Start(Options{ConfigPath: r.path, Config: cfg, Log: log, Build: metrics.Build{Version: "test"},
		Executable: os.Args[0], Args: []string{"-test.run=^$"}}, Takeover{})
	if err != nil && spec.steered && errors.Is(err, steer.ErrNotAllowed) {
		t.Skipf("sk_lookup is not allowed here (run as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.d.Serve()
	r.d.Ready()
	go func() { defer close(r.followed); r.d.Follow(r.sigs) }()
	t.Cleanup(r.stop)
	return r
}

// stop stops the daemon if Follow has not returned yet.
func (r *rig) stop() {
	select {
	case <-r.followed:
	default:
		r.sigs <- syscall.SIGTERM
		r.sigs <- syscall.SIGTERM // and cut the drain short
		<-r.followed
	}
	r.d.Close()
}

// get fetches an admin path and returns its status code and body.
func (r *rig) get(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + r.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A new binary that exits at once leaves the old process serving:
// connections, its clients' backends, the admin API and readiness,
// alone and in a cluster (issue 29, defect 1: in a cluster, Resume took
// the server's lock twice and /readyz never answered again).
func TestFailedUpgradeServesOn(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			r := newRig(t, cluster, "exit")
			lbtest.Eventually(t, 10*time.Second, "ready", func() bool { code, _ := r.get("/readyz"); return code == 200 })
			before := map[string]string{}
			for i := range 8 {
				src := lbtest.ClientIP(i)
				before[src] = mustWho(t, src, r.listen)
			}
			r.sigs <- syscall.SIGUSR2
			defer func() {
				if t.Failed() {
					t.Logf("the old process:\n%s", r.log)
				}
			}()
			lbtest.Eventually(t, 30*time.Second, "the failed upgrade logged", func() bool {
				return strings.Contains(r.log.String(), "upgrade failed")
			})
			lbtest.Eventually(t, 10*time.Second, "ready again after the failed upgrade", func() bool { code, _ := r.get("/readyz"); return code == 200 })
			if code, body := r.get("/api/backends"); code != 200 {
				t.Fatalf("admin API after the failed upgrade: %d %s", code, body)
			}
			for src, was := range before {
				if now := mustWho(t, src, r.listen); now != was {
					t.Errorf("client %s moved from %s to %s across a failed upgrade", src, was, now)
				}
			}
		})
	}
}

// An upgrade hands the listeners, the admin API and the open
// connections to the new process: a connection open before it goes on
// there, so the old process has nothing to drain and ends at once; new
// connections reach the new process, on the client's own backend.
func TestUpgradeHandsOver(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) { testUpgradeHandsOver(t, cluster) })
	}
}

func testUpgradeHandsOver(t *testing.T, cluster bool) {
	r := newRig(t, cluster, "config")
	upgradeHandsOver(t, r)
}

// A range steered by sk_lookup is handed over too, program and all: it
// was restarted before (issue 34), cutting every connection.
func TestUpgradeHandsOverSteeredRange(t *testing.T) {
	upgradeHandsOver(t, startRig(t, rigSpec{steered: true, child: "config"}))
}

func upgradeHandsOver(t *testing.T, r *rig) {
	src := lbtest.ClientIP(1)
	was := mustWho(t, src, r.listen)
	held, err := lbtest.Connect(lbtest.ClientIP(2), r.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r.sigs <- syscall.SIGUSR2
	var pid int
	lbtest.Eventually(t, 30*time.Second, "the new process answering the admin API", func() bool {
		pid = adminPID(r)
		return pid != 0 && pid != os.Getpid()
	})
	defer reap(t, pid)
	select {
	case <-r.followed:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process is still draining: its open connection did not move")
	}
	if now := mustWho(t, src, r.listen); now != was {
		t.Errorf("client %s moved from %s to %s in the upgrade", src, was, now)
	}
	held.Write([]byte("still here\n"))
	held.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := held.R.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("the connection held across the upgrade broke: %q %v", line, err)
	}
	if !strings.Contains(r.log.String(), "moved=1") {
		t.Errorf("the old process's log does not say it moved the connection:\n%s", r.log)
	}
	held.Close() // before reap stops the new process, which would wait for it
}

// A new process that dies once it serves, before it takes the open
// connections, fails the upgrade: the old process keeps its connections,
// which copy on, and takes its listening sockets back.
func TestNewProcessDiesInHandOver(t *testing.T) {
	r := newRig(t, false, "die")
	c, err := lbtest.Connect(lbtest.ClientIP(3), r.listen)
	if err != nil {
		t.Fatal(err)
	}
	s := lbtest.StartStream(c, 100, 5*time.Millisecond)
	r.sigs <- syscall.SIGUSR2
	defer func() {
		if t.Failed() {
			t.Logf("the old process:\n%s", r.log)
		}
	}()
	lbtest.Eventually(t, 30*time.Second, "the failed upgrade logged", func() bool {
		return strings.Contains(r.log.String(), "did not take the open connections")
	})
	sent := s.Sent()
	lbtest.Eventually(t, 5*time.Second, "the stream going on in the old process", func() bool { return s.Sent() > sent+1000 })
	if n, _, err := s.Stop(); err != nil {
		t.Fatalf("the stream kept by the old process (%d bytes): %v", n, err)
	}
	mustWho(t, lbtest.ClientIP(4), r.listen) // a new connection: the listener is back
	if pid := adminPID(r); pid != os.Getpid() {
		t.Fatalf("the admin API answers from pid %d, not the old process", pid)
	}
}

func adminPID(r *rig) int {
	code, body := r.get("/api/info")
	var info struct{ PID int }
	if code != 200 || json.Unmarshal([]byte(body), &info) != nil {
		return 0
	}
	return info.PID
}

// reap stops the new process and waits for it.
func reap(t *testing.T, pid int) {
	syscall.Kill(pid, syscall.SIGTERM)
	syscall.Kill(pid, syscall.SIGTERM)
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Errorf("waiting for the new process %d: %v", pid, err)
	}
}

func mustWho(t *testing.T, src string, dst netip.AddrPort) string {
	t.Helper()
	name, err := lbtest.Who(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return name
}
