//go:build linux

package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

var binary string

func TestMain(m *testing.M) {
	bin, remove := lbtest.BuildBinary(".")
	binary = bin
	code := lbtest.LeakCheck(m.Run())
	remove()
	os.Exit(code)
}

// check accepts the example lb.toml and summarises it, and rejects a bad
// file with exit 1 and every mistake named.
func TestCheckCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", "../../lb.toml"}, &out, &errb); code != 0 {
		t.Fatalf("check lb.toml = %d: %s", code, errb.String())
	}
	for _, want := range []string{"OK", "listeners: 3", "cas1", "affinity src-ip", "ttl 3h0m0s",
		"admin: http://127.0.0.1:9090 (no token: loopback only)", "stickylb-pins.json every 1m0s, journal",
		"drain on stop: up to 30s", "timeouts: connect 5s (2 retries), idle off, half-close 1m0s; keepalive 1m0s",
		"limits per client (IPv4 /32, IPv6 /64): open connections 30000, new connections per second none; new pins per second 1000", "check tcp: tcp on every backend port every 2s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check summary lacks %q:\n%s", want, out.String())
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[listener.a]\nlisten = \"127.0.0.1:1\"\npool = \"cas\"\n[pool.cas.affinity]\nttl = \"forever\"\n"), 0o644)
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "-c", bad}, &out, &errb); code != 1 {
		t.Fatalf("check of a bad file exited %d, want 1", code)
	}
	if want := bad + ":5: pool.cas.affinity.ttl: bad duration"; !strings.Contains(errb.String(), want) {
		t.Errorf("error output\n%s\nlacks %q", errb.String(), want)
	}
	if code := run([]string{"check", "-c", "/nonexistent.toml"}, &out, &errb); code != 1 {
		t.Errorf("check of a missing file exited %d", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command exited %d, want 2", code)
	}
	out.Reset()
	if run([]string{"version"}, &out, &errb) != 0 || !regexp.MustCompile(`^stickylb \S+ commit \S+ built \S+ go1\.\S+ linux/\w+\n$`).MatchString(out.String()) {
		t.Errorf("version printed %q", out.String())
	}
}

// proc is a running stickylb binary with its log.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan error
}

func (p *proc) logs() string { p.mu.Lock(); defer p.mu.Unlock(); return p.log.String() }

var listening = regexp.MustCompile(`msg=listening listener=(\S+) addr=(\S+)`)

// addrs waits for the "listening" lines and returns listener addresses.
func (p *proc) addrs(n int) map[string]netip.AddrPort {
	p.t.Helper()
	m := map[string]netip.AddrPort{}
	lbtest.Eventually(p.t, 10*time.Second, "listening lines", func() bool {
		for _, mm := range listening.FindAllStringSubmatch(p.logs(), -1) {
			m[mm[1]] = netip.MustParseAddrPort(mm[2])
		}
		return len(m) >= n
	})
	return m
}

func startBinary(t *testing.T, prefix []string, args ...string) *proc {
	t.Helper()
	return startBinaryEnv(t, nil, prefix, args...)
}

// startBinaryEnv is startBinary with extra environment variables.
func startBinaryEnv(t *testing.T, env []string, prefix []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan error, 1)}
	argv := append(prefix, append([]string{binary}, args...)...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if m := pidLine.FindStringSubmatch(p.logs()); m != nil {
			pid, _ := strconv.Atoi(m[1])
			syscall.Kill(pid, syscall.SIGKILL)
		}
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("stickylb log:\n%s", p.logs())
		}
	})
	return p
}

var pidLine = regexp.MustCompile(`msg="stickylb running".* pid=(\d+)`)

// signal sends sig to the stickylb process (which, under strace, is not
// the process the test started).
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	var pid int
	lbtest.Eventually(p.t, 10*time.Second, "the pid in the start line", func() bool {
		m := pidLine.FindStringSubmatch(p.logs())
		if m != nil {
			pid, _ = strconv.Atoi(m[1])
		}
		return m != nil
	})
	syscall.Kill(pid, sig)
}

func (p *proc) wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(timeout):
		p.t.Fatalf("stickylb did not exit within %s", timeout)
		return nil
	}
}

func writeConfig(t *testing.T, body string) string {
	path := filepath.Join(t.TempDir(), "lb.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func labConfig(ports []int, backends []*lbtest.Backend, extra string) string {
	var b strings.Builder
	b.WriteString("[global]\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n")
	for i, p := range ports {
		fmt.Fprintf(&b, "[listener.l%d]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", i, p)
	}
	b.WriteString("[pool.cas.health]\ninterval = \"100ms\"\n" + extra)
	for _, be := range backends {
		fmt.Fprintf(&b, "[pool.cas.backend.%s]\naddress = %q\n", be.Name, be.Host)
	}
	return b.String()
}

// SIGTERM stops accepting but waits for an open connection to finish;
// the process exits 0 once it has.
func TestBinarySIGTERMDrains(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	pidfile := filepath.Join(t.TempDir(), "stickylb.pid")
	p := startBinary(t, nil, "run", "-c", writeConfig(t, labConfig(ports, bs, "")), "--cpuprofile", profile, "--pidfile", pidfile)
	addr := p.addrs(1)["l0"]
	lbtest.Eventually(t, 5*time.Second, "the pid file", func() bool {
		b, _ := os.ReadFile(pidfile)
		return strings.TrimSpace(string(b)) == strconv.Itoa(p.cmd.Process.Pid)
	})
	c, err := lbtest.Connect("127.3.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGTERM)
	lbtest.Eventually(t, 5*time.Second, "drain log line", func() bool { return strings.Contains(p.logs(), "stopping: no new connections") })
	if _, err := lbtest.Connect("127.3.0.2", addr); err == nil {
		t.Fatal("a new connection was accepted after SIGTERM")
	}
	c.Write([]byte("after sigterm\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := c.R.ReadString('\n'); err != nil || line != "after sigterm\n" {
		t.Fatalf("open connection broke on SIGTERM: %q %v", line, err)
	}
	c.Close()
	if err := p.wait(5 * time.Second); err != nil {
		t.Fatalf("exit after drain: %v", err)
	}
	if !strings.Contains(p.logs(), "stopped cleanly") {
		t.Errorf("no 'stopped cleanly' line")
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("the pid file is still there after exit: %v", err)
	}
	// --cpuprofile wrote a whole profile on the way out: pprof's gzipped
	// protobuf, which reads to its end.
	f, err := os.Open(profile)
	if err != nil {
		t.Fatalf("cpu profile: %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("cpu profile is not gzip: %v", err)
	}
	if n, err := io.Copy(io.Discard, zr); err != nil || n == 0 {
		t.Fatalf("cpu profile: %d bytes, %v", n, err)
	}
}

// SIGHUP with a broken file is rejected and logged with file and line;
// the old config keeps serving. A good file then applies.
func TestBinarySIGHUPReload(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	path := writeConfig(t, labConfig(ports, bs[:1], ""))
	p := startBinary(t, nil, "run", "-c", path)
	addr := p.addrs(1)["l0"]
	if b, err := lbtest.Who("127.3.1.1", addr); err != nil || b != "cas1" {
		t.Fatalf("before reload: %s %v", b, err)
	}
	os.WriteFile(path, []byte(labConfig(ports, bs, "rise = \"two\"\n")), 0o644)
	p.signal(syscall.SIGHUP)
	lbtest.Eventually(t, 5*time.Second, "reload failure logged", func() bool { return strings.Contains(p.logs(), "reload failed") })
	if !strings.Contains(p.logs(), path+":") || !strings.Contains(p.logs(), "pool.cas.health.rise") {
		t.Errorf("the reload failure does not name the file, line and key")
	}
	if b, err := lbtest.Who("127.3.1.2", addr); err != nil || b != "cas1" {
		t.Fatalf("after a bad reload: %s %v; the old config must keep running", b, err)
	}
	// Good reload: cas1 drained by weight 0, cas2 and cas3 added.
	os.WriteFile(path, []byte(strings.Replace(labConfig(ports, bs, ""), "address = \"127.0.0.11\"", "address = \"127.0.0.11\"\nweight = 0", 1)), 0o644)
	p.signal(syscall.SIGHUP)
	lbtest.Eventually(t, 5*time.Second, "reload applied", func() bool { return strings.Contains(p.logs(), "msg=reloaded") })
	if b, _ := lbtest.Who("127.3.1.1", addr); b != "cas1" {
		t.Errorf("pinned client moved off cas1 by a weight change: %s", b)
	}
	for i := range 20 {
		if b, _ := lbtest.Who(fmt.Sprintf("127.3.2.%d", i+1), addr); b == "cas1" {
			t.Fatalf("new client given weight-0 cas1")
		}
	}
}

// splice(2) moves a bulk transfer: run the binary under strace and check
// that the spliced byte count covers the payload while read(2) barely moves
// anything. (Each direction's first buffer, 16 KiB, is read and written
// in user space: that is how the proxy tells bulk from small messages.)
func TestBinarySplices(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed (.ci/run installs it)")
	}
	if out, err := exec.Command("strace", "-f", "-qq", "-o", "/dev/null", "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here: %v %s", err, out)
	}
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	trace := filepath.Join(t.TempDir(), "strace.txt")
	p := startBinary(t, []string{"strace", "-f", "-qq", "-e", "trace=splice,read,readv,recvfrom,recvmsg", "-o", trace},
		"run", "-c", writeConfig(t, labConfig(ports, bs, "enabled = false\n")))
	addr := p.addrs(1)["l0"]
	const size = 16 << 20
	payload := make([]byte, size)
	rand.Read(payload)
	c, err := lbtest.Connect("127.3.3.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { c.Write(payload); c.CloseWrite() }()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, c.R)
	c.Close()
	want := sha256.Sum256(payload)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echo through the proxy under strace: %d bytes, %v", n, err)
	}
	lbtest.Eventually(t, 5*time.Second, "connection closed line", func() bool { return strings.Contains(p.logs(), "connection closed") })
	// Signal stickylb itself: strace does not pass SIGTERM on.
	p.signal(syscall.SIGTERM)
	p.wait(10 * time.Second)

	raw, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	spliced, readBytes, splices := int64(0), int64(0), 0
	// Calls interrupted by another thread's are printed as
	// "<... splice resumed>) = N"; count those too.
	ret := regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?(\w+)(?:\(| resumed>).*\)\s+=\s+(\d+)`)
	for _, line := range strings.Split(string(raw), "\n") {
		m := ret.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1] == "splice" {
			spliced += v
			splices++
		} else {
			readBytes += v
		}
	}
	t.Logf("strace: %d splice calls moved %d bytes; read-family calls moved %d bytes", splices, spliced, readBytes)
	// Each byte is spliced twice per direction (socket to pipe, pipe to
	// socket) and the payload crosses the proxy twice (there and back),
	// less the first buffer of each direction.
	if want := int64(4 * (size - 2*16<<10)); spliced < want {
		t.Fatalf("splice moved %d bytes, want at least %d: the copy is not zero-copy", spliced, want)
	}
	if readBytes > size/16 {
		t.Fatalf("read(2) moved %d bytes: payload went through user space", readBytes)
	}
}

// lab lists its scenarios, refuses an unknown one with exit 2, and runs
// one to its verdict as JSON.
func TestLabAndSimCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"lab", "--list"}, &out, &errb); code != 0 {
		t.Fatalf("lab --list = %d: %s", code, errb.String())
	}
	for _, name := range []string{"no-affinity", "nlb-membership-change", "mid-flow-reroute", "stickylb-restarted"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("lab --list lacks %s", name)
		}
	}
	if code := run([]string{"lab", "--scenario", "nope"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `no scenario "nope"`) {
		t.Errorf("lab --scenario nope = %d, %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	// One scenario end to end, JSON out.
	if code := run([]string{"lab", "--scenario", "stickylb", "--duration", "1s", "--sessions", "6", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("lab --scenario stickylb = %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"verdict": "fixed"`) || !strings.Contains(out.String(), `"mapi_e_network_error": 0`) {
		t.Errorf("lab JSON lacks the verdict:\n%.600s", out.String())
	}
}

var adminLine = regexp.MustCompile(`msg="admin listening" addr=(\S+)`)

func (p *proc) adminAddr() string {
	p.t.Helper()
	var addr string
	lbtest.Eventually(p.t, 10*time.Second, "admin listening line", func() bool {
		m := adminLine.FindStringSubmatch(p.logs())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

func (p *proc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if err := p.wait(10 * time.Second); err != nil {
		p.t.Fatalf("exit: %v", err)
	}
}

// Pins survive a restart: clients land on the same backends afterwards,
// although a weight change in between would move many of them, as a run
// without the snapshot shows. A corrupt snapshot is reported and ignored.
func TestBinaryRestartKeepsPins(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	dir := t.TempDir()
	snap := filepath.Join(dir, "pins.json")
	withSnap := func(weights string) string {
		cfg := labConfig(ports, bs, "enabled = false\n")
		cfg = strings.Replace(cfg, "[global]\n", "[global]\nsnapshot_file = \"pins.json\"\n", 1)
		return strings.Replace(cfg, "address = \"127.0.0.11\"", "address = \"127.0.0.11\"\nweight = "+weights, 1)
	}
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte(withSnap("1")), 0o644)

	p := startBinary(t, nil, "run", "-c", path)
	addr := p.addrs(1)["l0"]
	owner := map[string]string{}
	for i := range 60 {
		src := fmt.Sprintf("127.5.0.%d", i+1)
		b, err := lbtest.Who(src, addr)
		if err != nil {
			t.Fatal(err)
		}
		owner[src] = b
	}
	// ctl against the live process.
	var out, errb bytes.Buffer
	admin := "http://" + p.adminAddr()
	if code := run([]string{"ctl", "--admin", admin, "backends"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "cas1") || !strings.Contains(out.String(), "60 pins") {
		t.Errorf("ctl backends = %d:\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"ctl", "--admin", admin, "pin", "127.5.0.1"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "pinned to "+owner["127.5.0.1"]) {
		t.Errorf("ctl pin = %d: %s %s", code, out.String(), errb.String())
	}
	p.stop()
	if !strings.Contains(p.logs(), "msg=\"pins saved\"") {
		t.Fatalf("no pins saved at shutdown")
	}

	// cas1 now has 20 times the weight: hashing alone would move clients.
	os.WriteFile(path, []byte(withSnap("20")), 0o644)
	p2 := startBinary(t, nil, "run", "-c", path)
	addr = p2.addrs(1)["l0"]
	lbtest.Eventually(t, 5*time.Second, "restore line", func() bool { return strings.Contains(p2.logs(), "pins restored") })
	if !strings.Contains(p2.logs(), "restored=60") {
		t.Errorf("start did not restore 60 pins:\n%s", p2.logs())
	}
	for src, was := range owner {
		if got, _ := lbtest.Who(src, addr); got != was {
			t.Fatalf("after restart %s went to %s, was %s", src, got, was)
		}
	}
	p2.stop()

	// The same restart without the snapshot moves clients: the test above
	// could fail.
	os.WriteFile(snap, []byte("{not json"), 0o644)
	p3 := startBinary(t, nil, "run", "-c", path)
	addr = p3.addrs(1)["l0"]
	lbtest.Eventually(t, 5*time.Second, "snapshot warning", func() bool { return strings.Contains(p3.logs(), "pin snapshot ignored") })
	moved := movedFrom(owner, addr)
	if moved == 0 {
		t.Fatalf("without the snapshot no client moved: the weight change does not test anything")
	}
	t.Logf("with the snapshot 0 of 60 clients moved; without it %d moved", moved)
	p3.stop()
}

// The operator's loop against the real binary: scrape /metrics, drain a
// backend with ctl and see new clients avoid it, unpin, reload through
// the API; and the token rule for a non-loopback admin address.
func TestBinaryOperate(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	path := writeConfig(t, labConfig(ports, bs, "enabled = false\n"))
	p := startBinary(t, nil, "run", "-c", path)
	addr := p.addrs(1)["l0"]
	admin := "http://" + p.adminAddr()
	ctl := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := run(append([]string{"ctl", "--admin", admin}, args...), &out, &errb)
		return out.String() + errb.String(), code
	}
	first := map[string]string{}
	for i := range 20 {
		src := fmt.Sprintf("127.6.0.%d", i+1)
		b, err := lbtest.Who(src, addr)
		if err != nil {
			t.Fatal(err)
		}
		first[src] = b
	}
	if out, code := ctl("drain", "cas1"); code != 0 || !strings.Contains(out, "cas/cas1 is now draining (") {
		t.Fatalf("ctl drain, by backend name alone: %d %s", code, out)
	}
	for i := range 20 {
		if b, _ := lbtest.Who(fmt.Sprintf("127.6.1.%d", i+1), addr); b == "cas1" {
			t.Fatal("new client sent to draining cas1")
		}
	}
	if out, code := ctl("unpin", "--client", "127.6.0.1"); code != 0 || !strings.Contains(out, "1 pin deleted") {
		t.Fatalf("ctl unpin: %d %s", code, out)
	}
	if out, code := ctl("unpin"); code != 2 || !strings.Contains(out, "--client IP | --backend NAME") {
		t.Fatalf("ctl unpin without arguments: %d %s", code, out)
	}
	if out, code := ctl("drain", "nope"); code != 1 || !strings.Contains(out, `no backend "nope" in any pool`) {
		t.Fatalf("ctl drain of an unknown name: %d %s", code, out)
	}
	held, err := lbtest.Connect("127.6.2.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if out, code := ctl("connections", "--client", "127.6.2.1"); code != 0 ||
		!regexp.MustCompile(`ID +CLIENT +POOL +BACKEND +AGE\nl0/\d+ +127\.6\.2\.1:\d+ +cas +`+held.Backend+` +\d+s\n$`).MatchString(out) {
		t.Fatalf("ctl connections: %d %q", code, out)
	}
	if out, code := ctl("close", "--client", "127.6.2.1"); code != 0 || out != "1 connection closed here (pins kept)\n" {
		t.Fatalf("ctl close: %d %q", code, out)
	}
	if out, code := ctl("events"); code != 0 || !strings.Contains(out, "1 connections closed of 127.6.2.1") {
		t.Fatalf("ctl close is not an event: %d %q", code, out)
	}
	if out, code := ctl("connections", "--client", "127.6.2.1"); code != 0 || out != "no open connections match\n" {
		t.Fatalf("ctl connections after close: %d %q", code, out)
	}
	if out, code := ctl("weight", "cas2", "0"); code != 0 || !strings.Contains(out, "cas/cas2 now has weight 0") {
		t.Fatalf("ctl weight: %d %s", code, out)
	}
	if out, code := ctl("backends"); code != 0 || !regexp.MustCompile(`cas +cas2 +127\.0\.0\.12 +up +since start +0 +\d+ +\d+ +[-\d.]+ +0 +- *\n`).MatchString(out) {
		t.Fatalf("ctl backends after weight 0: %d %s", code, out)
	}
	if out, code := ctl("reload"); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("ctl reload: %d %s", code, out)
	}
	// The operator's weight holds over a reload that leaves lb.toml's
	// weight for cas2 as it was (docs/operations.md: until the file's
	// weight changes).
	if out, code := ctl("--json", "backends"); code != 0 || !regexp.MustCompile(`"name": "cas2",[^}]*"weight": 0,`).MatchString(out) {
		t.Fatalf("after a reload that left lb.toml's weight as it was, cas2 lost the operator's weight 0:\n%s", out)
	}
	if out, code := ctl("info"); code != 0 || !regexp.MustCompile(`stickylb dev commit .*, pid \d+, running, up \d+s .*\nconfig .*lb\.toml: 1 listener, 1 pool; reloads: 1 applied, 0 failed\n\d+ connections? open, file limit \d+`).MatchString(out) {
		t.Fatalf("ctl info: %d %q", code, out)
	}
	if out, code := ctl("events"); code != 0 || !strings.Contains(out, "cas/cas1  set drain") {
		t.Fatalf("ctl events: %d %s", code, out)
	}
	if out, code := ctl("drain", "cas/nope"); code != 1 || !strings.Contains(out, `no backend "nope"`) {
		t.Fatalf("ctl drain of an unknown backend: %d %s", code, out)
	}
	// An unknown connection, backend or pool is an error, not "0 closed".
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"close", "--id", "l0/999999"}, "no connection l0/999999 is open"},
		{[]string{"close", "--backend", "nosuch"}, `no backend "nosuch"`},
		{[]string{"close", "--pool", "nosuch", "--backend", "cas1"}, `no pool "nosuch"`},
		{[]string{"unpin", "--backend", "nosuch"}, `pool cas has no backend "nosuch"`},
	} {
		if out, code := ctl(c.args...); code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("ctl %v: %d %q; want exit 1 saying %q", c.args, code, out, c.want)
		}
	}
	if out, code := ctl("listeners"); code != 0 || !regexp.MustCompile(`(?m)^l0\s+127\.0\.0\.1:\d+\s+\d+\s+socket\s+cas\s+\d+\s+\d+$`).MatchString(out) {
		t.Errorf("ctl listeners: %d %q", code, out)
	}
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`stickylb_connections_accepted_total{listener="l0"} 41`,
		`stickylb_connections_ended_total{listener="l0",termination="cut-operator"} 1`,
		`stickylb_backend_state{backend="cas1",pool="cas",state="drain"} 1`,
		`stickylb_affinity_unpins_total{pool="cas",reason="deleted"} 1`,
		`stickylb_config_reloads_total{result="success"} 1`,
		"go_goroutines", "process_open_fds",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// With no backend to give, ctl readyz exits 1 saying why in words.
	for _, b := range []string{"cas1", "cas2", "cas3"} {
		if out, code := ctl("maint", b); code != 0 {
			t.Fatalf("ctl maint %s: %s", b, out)
		}
	}
	if out, code := ctl("readyz"); code != 1 || !strings.Contains(out, "not ready: no backend can take a new client in pool cas (HTTP 503)") || strings.Contains(out, "{") {
		t.Errorf("ctl readyz with every backend in maintenance: %d %q", code, out)
	}
	// A page of pins reads sorted by client.
	if out, code := ctl("pins", "--limit", "50"); code == 0 {
		var clients []string
		for _, line := range strings.Split(out, "\n")[1:] {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "cas" {
				clients = append(clients, f[1])
			}
		}
		sorted := slices.SortedFunc(slices.Values(clients), func(a, b string) int {
			return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b))
		})
		if len(clients) < 5 || !slices.Equal(clients, sorted) {
			t.Errorf("ctl pins not sorted by client: %v", clients)
		}
	}
	// A non-loopback admin address without a token is refused by check.
	bad := writeConfig(t, strings.Replace(labConfig(ports, bs, ""), `listen = "127.0.0.1:0"`+"\n[listener", `listen = "0.0.0.0:9999"`+"\n[listener", 1))
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "admin.listen: 0.0.0.0:9999 is reachable from other machines") {
		t.Errorf("check with an open admin address: %d %s", code, errb.String())
	}
}

// analyze refuses a missing or garbage file with exit 1 and a bad flag
// with exit 2, each with a message naming the problem.
func TestAnalyzeCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"analyze", "/nonexistent.pcap"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no such file") {
		t.Errorf("missing file: %d %s", code, errb.String())
	}
	garbage := filepath.Join(t.TempDir(), "g.pcap")
	os.WriteFile(garbage, []byte("hello, not a capture"), 0o644)
	errb.Reset()
	if code := run([]string{"analyze", garbage}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a pcap or pcapng capture") {
		t.Errorf("garbage: %d %s", code, errb.String())
	}
	if code := run([]string{"analyze", "--ports", "135,x", garbage}, &out, &errb); code != 2 {
		t.Errorf("bad --ports: %d", code)
	}
	errb.Reset()
	if code := run([]string{"analyze", "--steps", "19201", garbage}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "LISTEN_PORT,BACKEND_PORT") {
		t.Errorf("bad --steps: %d %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"analyze", "--steps", "19201,9000", garbage}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a pcap or pcapng capture") {
		t.Errorf("--steps on garbage: %d %s", code, errb.String())
	}
}

// Service-aware checks and the dashboard, through the real binary: a
// send-expect check that only cas1's reply satisfies takes cas2 and cas3
// down, every client goes to cas1, and the admin address serves the
// dashboard and the matching states.
func TestBinaryChecksAndDashboard(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	cfg := labConfig(ports, bs, "") +
		"[pool.cas.check.greeting]\ntype = \"send-expect\"\nexpect = \"cas1\"\ninterval = \"50ms\"\n"
	p := startBinary(t, nil, "run", "-c", writeConfig(t, cfg))
	addr := p.addrs(1)["l0"]
	admin := "http://" + p.adminAddr()
	lbtest.Eventually(t, 10*time.Second, "cas2 and cas3 down by the greeting check", func() bool {
		return strings.Count(p.logs(), "check=greeting") >= 2
	})
	for i := range 10 {
		if b, err := lbtest.Who(fmt.Sprintf("127.6.2.%d", i+1), addr); err != nil || b != "cas1" {
			t.Fatalf("client sent to %s (%v); only cas1 passes the check", b, err)
		}
	}
	get := func(path string) string {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if page := get("/"); !strings.Contains(page, "<title>stickylb</title>") || !strings.Contains(page, "/api/backends") {
		t.Fatalf("the admin address does not serve the dashboard:\n%.300s", page)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"ctl", "--admin", admin, "backends"}, &out, &errb); code != 0 {
		t.Fatalf("ctl backends: %s", errb.String())
	}
	for _, want := range []string{"cas1  127.0.0.11  up", "cas2  127.0.0.12  down", "cas3  127.0.0.13  down"} {
		if !strings.Contains(strings.Join(strings.Fields(out.String()), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("ctl backends lacks %q:\n%s", want, out.String())
		}
	}
}

// movedFrom counts the clients of owner (client -> backend) that addr
// now sends to another backend.
func movedFrom(owner map[string]string, addr netip.AddrPort) int {
	moved := 0
	for src, was := range owner {
		if got, _ := lbtest.Who(src, addr); got != was {
			moved++
		}
	}
	return moved
}
