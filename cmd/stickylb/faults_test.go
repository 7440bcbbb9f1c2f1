//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// tryConnect is lbtest.Connect with a short wait for the greeting, for
// connections that may be refused or left waiting in the backlog.
func tryConnect(src string, p *proc, addr string) (*lbtest.Client, bool) {
	c, err := lbtest.Dial(src, p.addrs(1)[addr])
	if err != nil {
		return nil, false
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, false
	}
	c.SetReadDeadline(time.Time{})
	return &lbtest.Client{TCPConn: c, R: r, Backend: strings.TrimSpace(line)}, true
}

var localErrorsMetric = regexp.MustCompile(`stickylb_local_errors_total\{errno="EMFILE",op="(\w+)"\} (\d+)`)

// With the process out of file descriptors, stickylb blames no backend:
// every CAS stays up (active and passive checks alike), no client is
// re-pinned, clients beyond the limit are refused, and the faults are
// counted as local errors by errno. Once descriptors free up, clients
// reach the backends they were pinned to.
func TestBinaryOutOfFilesBlamesNoBackend(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed: cannot cap the file limit of the process under test")
	}
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	p := startBinary(t, []string{"prlimit", "--nofile=48:48", "--"}, "run", "-c", writeConfig(t, labConfig(ports, bs, "")))
	admin := p.adminAddr()
	checks := watchChecks(t, admin, nil) // its connection is open before the limit bites
	var held []*lbtest.Client
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	failures := 0
	for i := 0; i < 60 && failures < 5; i++ {
		if c, ok := tryConnect(lbtest.ClientIP(9400+i), p, "l0"); ok {
			held = append(held, c)
		} else {
			failures++
		}
	}
	if failures == 0 {
		t.Fatalf("%d connections held and none refused: the file limit did not bite", len(held))
	}
	// Fall (3) five times over, counted rather than waited for: a busy
	// machine that checks slowly only makes this take longer.
	lbtest.Eventually(t, time.Minute, "15 checks of every backend at the file limit", func() bool { return checks.atLeast(15) })
	before := map[string]string{}
	for i, c := range held {
		before[lbtest.ClientIP(9400+i)] = c.Backend
		c.Close()
	}
	held = nil
	logs := p.logs()
	for _, bad := range []string{"backend down", "re-pinned", "passive check"} {
		if strings.Contains(logs, bad) {
			t.Fatalf("a local fault was blamed on a backend (%q in the log):\n%s", bad, logs)
		}
	}
	if !strings.Contains(logs, "errno=EMFILE") {
		t.Fatalf("no EMFILE logged:\n%s", logs)
	}
	lbtest.Eventually(t, 5*time.Second, "descriptors back", func() bool {
		c, ok := tryConnect(lbtest.ClientIP(9400), p, "l0")
		if ok {
			c.Close()
		}
		return ok
	})
	for src, want := range before {
		if got := mustWhoBinary(t, src, p); got != want {
			t.Fatalf("client %s moved from %s to %s after the file limit was hit", src, want, got)
		}
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	total := 0
	for _, m := range localErrorsMetric.FindAllStringSubmatch(string(body), -1) {
		n, _ := strconv.Atoi(m[2])
		total += n
	}
	if total == 0 {
		t.Fatalf("no EMFILE counted in stickylb_local_errors_total")
	}
	t.Logf("%d connections held at the limit; %d local EMFILE errors counted; no backend blamed", len(before), total)
}

// checkWatch counts the active checks of every backend through one
// admin connection, opened before a fault and kept alive, so that the API
// answers even while stickylb has no file descriptor or port to spare.
type checkWatch struct {
	url   string
	c     *http.Client
	since map[string]time.Time          // each backend's last check before the watch began
	seen  map[string]map[time.Time]bool // its checks after that
}

// watchChecks starts counting checks at admin; dial, if set, is how its
// one connection is made (inside a namespace, say).
func watchChecks(t *testing.T, admin string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *checkWatch {
	t.Helper()
	w := &checkWatch{url: "http://" + admin + "/api/backends", since: map[string]time.Time{}, seen: map[string]map[time.Time]bool{},
		c: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}}
	t.Cleanup(w.c.CloseIdleConnections)
	last, err := w.last()
	if err != nil {
		t.Fatal(err)
	}
	for name, at := range last {
		w.since[name], w.seen[name] = at, map[time.Time]bool{}
	}
	return w
}

// last is the time of each backend's last check.
func (w *checkWatch) last() (map[string]time.Time, error) {
	resp, err := w.c.Get(w.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st struct {
		Pools []struct {
			Backends []struct {
				Name      string `json:"name"`
				LastCheck *struct {
					Time time.Time `json:"time"`
				} `json:"last_check"`
			} `json:"backends"`
		} `json:"pools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	m := map[string]time.Time{}
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			if b.LastCheck != nil {
				m[b.Name] = b.LastCheck.Time
			} else {
				m[b.Name] = time.Time{}
			}
		}
	}
	return m, nil
}

// atLeast says whether every backend has had n checks since the watch
// began. It counts the checks it sees; a check it misses between two
// reads only makes it wait for more.
func (w *checkWatch) atLeast(n int) bool {
	last, err := w.last()
	if err != nil {
		return false
	}
	enough := true
	for name, seen := range w.seen {
		if at := last[name]; at.After(w.since[name]) {
			seen[at] = true
		}
		enough = enough && len(seen) >= n
	}
	return enough
}

func mustWhoBinary(t *testing.T, src string, p *proc) string {
	t.Helper()
	b, err := lbtest.Who(src, p.addrs(1)["l0"])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A thousand idle connections to the admin port take a bounded number of
// file descriptors: with a file limit of 256 the proxy still serves.
func TestBinaryAdminFloodLeavesProxyAlone(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed: cannot cap the file limit of the process under test")
	}
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	p := startBinary(t, []string{"prlimit", "--nofile=256:256", "--"}, "run", "-c", writeConfig(t, labConfig(ports, bs, "")))
	admin := netip.MustParseAddrPort(p.adminAddr())
	for i := range 1000 {
		c, err := lbtest.Dial(lbtest.ClientIP(20000+i), admin)
		if err != nil {
			t.Fatalf("idle admin connection %d: %v", i, err)
		}
		defer c.Close()
	}
	for i := range 40 {
		c, ok := tryConnect(lbtest.ClientIP(9500+i), p, "l0")
		if !ok {
			t.Fatalf("proxied client %d refused with 1000 idle admin connections open:\n%s", i, p.logs())
		}
		defer c.Close()
	}
	if strings.Contains(p.logs(), "backend down") {
		t.Fatalf("a backend was marked down:\n%s", p.logs())
	}
	t.Logf("1000 idle admin connections (file limit 256): 40 of 40 proxied clients served, no backend down")
}

// A SIGKILL loses no pin older than journal_interval (1s): with cas1 in
// maintenance 60 new clients are pinned elsewhere, cas1 comes back, and
// after a kill -9 and a restart every client still reaches the CAS it
// was pinned to, though hashing alone would send a third of them to cas1.
func TestBinarySIGKILLKeepsPins(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	dir := t.TempDir()
	cfg := strings.Replace(labConfig(ports, bs, "enabled = false\n"), "[global]\n", "[global]\nsnapshot_file = \"pins.json\"\n", 1)
	path := filepath.Join(dir, "lb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, nil, "run", "-c", path)
	addr := p.addrs(1)["l0"]
	admin := "http://" + p.adminAddr()
	ctl := func(args ...string) {
		var out, errb bytes.Buffer
		if code := run(append([]string{"ctl", "--admin", admin}, args...), &out, &errb); code != 0 {
			t.Fatalf("ctl %v = %d: %s", args, code, errb.String())
		}
	}
	ctl("maint", "cas/cas1")
	owner := map[string]string{}
	for i := range 60 {
		src := fmt.Sprintf("127.6.0.%d", i+1)
		b, err := lbtest.Who(src, addr)
		if err != nil {
			t.Fatal(err)
		}
		owner[src] = b
	}
	ctl("ready", "cas/cas1")
	// The journal is fsynced every journal_interval (1s): once it holds
	// every pin, a kill -9 must lose none.
	lbtest.Eventually(t, 5*time.Second, "60 pins in the journal", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "pins.json.journal"))
		return bytes.Count(b, []byte("\n")) >= 60
	})
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(5 * time.Second)

	p2 := startBinary(t, nil, "run", "-c", path)
	addr = p2.addrs(1)["l0"]
	lbtest.Eventually(t, 5*time.Second, "restore line", func() bool { return strings.Contains(p2.logs(), "pins restored") })
	if !strings.Contains(p2.logs(), "pins=60") {
		t.Errorf("restart does not hold 60 pins:\n%s", p2.logs())
	}
	moved := movedFrom(owner, addr)
	if moved > 0 {
		t.Fatalf("%d of 60 clients moved after kill -9 and restart", moved)
	}
	// The same restart with neither snapshot nor journal: hashing alone
	// sends back only the clients whose hash choice was theirs anyway.
	p2.cmd.Process.Signal(syscall.SIGKILL)
	p2.wait(5 * time.Second)
	os.Remove(filepath.Join(dir, "pins.json"))
	os.Remove(filepath.Join(dir, "pins.json.journal"))
	p3 := startBinary(t, nil, "run", "-c", path)
	addr = p3.addrs(1)["l0"]
	without := movedFrom(owner, addr)
	if without == 0 {
		t.Fatalf("without the journal no client moved either: the test does not exercise the pins")
	}
	t.Logf("after kill -9 and a restart: 60 pins restored, 0 of 60 clients moved; without snapshot and journal: %d of 60 moved", without)
}
