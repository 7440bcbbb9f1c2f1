//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// writeSnapshot writes a pin snapshot of n clients (10.x.y.z) pinned to
// backend in pool cas, seen now.
func writeSnapshot(t *testing.T, path, backend string, n int) {
	t.Helper()
	type pin struct {
		Client  string `json:"client"`
		Backend string `json:"backend"`
		Created int64  `json:"created"`
		Last    int64  `json:"last_seen"`
	}
	now := time.Now().Unix()
	pins := make([]pin, n)
	for i := range pins {
		pins[i] = pin{Client: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Backend: backend, Created: now, Last: now}
	}
	b, err := json.Marshal(map[string]any{"magic": "stickylb-pins", "version": 1, "written": time.Now().UTC(),
		"pools": map[string]any{"cas": map[string]any{"key": "src-ip", "ipv4_prefix": 24, "ipv6_prefix": 64, "pins": pins}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A SIGHUP that arrives while stickylb is still starting (here: loading a
// large pin snapshot, after its listeners are bound) does not kill it; the
// reload happens once it runs.
func TestBinaryHUPWhileStarting(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	dir := t.TempDir()
	writeSnapshot(t, filepath.Join(dir, "pins.json"), bs[0].Name, 300_000)
	cfg := strings.Replace(labConfig(ports, bs, ""), "[global]\n", "[global]\nsnapshot_file = \"pins.json\"\n", 1)
	path := filepath.Join(dir, "lb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, nil, "run", "-c", path)
	p.addrs(1) // bound, the snapshot not yet loaded
	if strings.Contains(p.logs(), "pins restored") {
		t.Fatal("the snapshot loaded before the test could signal: make it larger")
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	hup := time.Now()
	lbtest.Eventually(t, 20*time.Second, "running and reloaded", func() bool {
		return strings.Contains(p.logs(), "stickylb running") && strings.Contains(p.logs(), "msg=reloaded")
	})
	t.Logf("SIGHUP while restoring 300,000 pins: the process lived and reloaded %v after the signal, once running", time.Since(hup).Round(time.Millisecond))
	p.signal(syscall.SIGTERM)
	if err := p.wait(10 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// During a drain a SIGHUP is logged and ignored: open connections keep
// working. A second TERM then cuts them, and the log says it was the
// signal, not the drain timeout.
func TestBinaryHUPDuringDrain(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	cfg := strings.Replace(labConfig(ports, bs, ""), "drain_timeout = \"5s\"", "drain_timeout = \"20s\"", 1)
	p := startBinary(t, nil, "run", "-c", writeConfig(t, cfg))
	addr := p.addrs(1)["l0"]
	var open []*lbtest.Client
	for i := range 20 {
		c, err := lbtest.Connect(lbtest.ClientIP(9300+i), addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	p.signal(syscall.SIGTERM)
	lbtest.Eventually(t, 5*time.Second, "drain line", func() bool { return strings.Contains(p.logs(), "stopping: no new connections") })
	p.signal(syscall.SIGHUP)
	// The HUP is ignored where it is taken, so once its line is logged
	// nothing of it is left to wait for: no reload runs after it.
	lbtest.Eventually(t, 5*time.Second, "reload ignored line", func() bool { return strings.Contains(p.logs(), "reload ignored") })
	for i, c := range open {
		c.Write([]byte("still here\n"))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if line, err := c.R.ReadString('\n'); err != nil || line != "still here\n" {
			t.Fatalf("connection %d broke after a HUP during the drain: %q %v", i, line, err)
		}
	}
	p.signal(syscall.SIGTERM)
	if err := p.wait(5 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if logs := p.logs(); !strings.Contains(logs, "drain cut short by a second signal") || !strings.Contains(logs, "closed=20") {
		t.Fatalf("the cut is not logged as the second signal's with 20 connections:\n%s", logs)
	}
	if logs := p.logs(); strings.Contains(logs, "msg=reloaded") || strings.Contains(logs, "reload failed") {
		t.Fatalf("the HUP during the drain reloaded:\n%s", logs)
	}
	t.Logf("SIGTERM, SIGHUP, SIGTERM with 20 connections open: the HUP ignored, 20 of 20 echoed after it, the second TERM closed 20")
}

// The version, commit and build date set with -ldflags are what
// `stickylb version` prints, with the Go version and platform.
func TestVersionFromLdflags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stickylb")
	flags := "-X main.version=v1.2.3 -X main.commit=0123456789ab -X main.date=2026-11-29T12:00:00Z"
	if out, err := exec.Command("go", "build", "-ldflags", flags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	want := "stickylb v1.2.3 commit 0123456789ab built 2026-11-29T12:00:00Z " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if err != nil || string(out) != want {
		t.Fatalf("version printed %q (%v), want %q", out, err, want)
	}
}

// Under systemd (Type=notify) stickylb says READY=1 only once its
// listeners are bound and its pins restored, RELOADING=1 then READY=1
// around a reload, and STOPPING=1 when a drain begins.
func TestBinaryNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	p := startBinaryEnv(t, []string{"NOTIFY_SOCKET=" + sock}, nil, "run", "-c", writeConfig(t, labConfig(ports, bs, "")))
	next := func() string {
		t.Helper()
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, p.logs())
		}
		return string(buf[:n])
	}
	if got := next(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	// Ready means serving: a client connects and is answered at once.
	if _, err := lbtest.Who(lbtest.ClientIP(9990), p.addrs(1)["l0"]); err != nil {
		t.Fatalf("READY=1 but a client is not served: %v", err)
	}
	p.signal(syscall.SIGHUP)
	for _, want := range []string{"RELOADING=1", "READY=1"} {
		if got := next(); got != want {
			t.Fatalf("around a reload: %q, want %q", got, want)
		}
	}
	p.signal(syscall.SIGTERM)
	// The stop asks for its drain_timeout (5s) and 30s to save: the
	// unit's TimeoutStopSec follows drain_timeout.
	if got, want := next(), "STOPPING=1\nEXTEND_TIMEOUT_USEC=35000000"; got != want {
		t.Fatalf("on SIGTERM: %q, want %q", got, want)
	}
	p.wait(5 * time.Second)
}

// With stop_grace, a SIGTERM makes /readyz answer 503 at once while the
// listeners go on accepting for the grace period, so that keepalived
// moves the address before any client is refused; then the drain begins
// and new clients are refused. Before, SIGTERM closed the listeners at
// once.
func TestBinaryStopGrace(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	cfg := strings.Replace(labConfig(ports, bs, ""), "[global]\n", "[global]\nstop_grace = \"1500ms\"\n", 1)
	p := startBinary(t, nil, "run", "-c", writeConfig(t, cfg))
	addr := p.addrs(1)["l0"]
	admin := "http://" + p.adminAddr()
	readyz := func() int {
		var out, errb bytes.Buffer
		return run([]string{"ctl", "--admin", admin, "readyz"}, &out, &errb)
	}
	lbtest.Eventually(t, 5*time.Second, "ready", func() bool { return readyz() == 0 })
	p.signal(syscall.SIGTERM)
	term := time.Now()
	lbtest.Eventually(t, time.Second, "readyz 503 after SIGTERM", func() bool { return readyz() != 0 })
	notReady := time.Since(term)
	if _, err := lbtest.Who(lbtest.ClientIP(9400), addr); err != nil {
		t.Fatalf("a client during the stop's grace was refused: %v", err)
	}
	served := time.Since(term)
	lbtest.Eventually(t, 5*time.Second, "clients refused once the drain begins", func() bool {
		_, err := lbtest.Who(lbtest.ClientIP(9401), addr)
		return err != nil
	})
	if refused := time.Since(term); refused < 1400*time.Millisecond {
		t.Fatalf("clients refused %v after SIGTERM, within the 1.5s grace", refused)
	}
	p.wait(10 * time.Second)
	t.Logf("stop_grace 1.5s: readyz 503 within %v of SIGTERM, a client served %v after it, refused from 1.5s on", notReady.Round(time.Millisecond), served.Round(time.Millisecond))
}

// The packaged unit is hardened as docs/operations.md says and passes
// systemd-analyze verify with the real binary in its place.
func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile("../../packaging/stickylb.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=", "User=stickylb", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=stickylb", "PrivateTmp=yes"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (.ci/run installs systemd): the unit is not verified")
	}
	path := filepath.Join(t.TempDir(), "stickylb.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/stickylb", binary)), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Every subcommand answers --help with its usage and exit 0, and acts on
// nothing: ctl reload --help reloads nothing (the admin address here is a
// closed port, so acting would fail), run --help starts nothing.
func TestHelpNeverActs(t *testing.T) {
	closed := "http://127.0.0.1:1"
	for _, args := range [][]string{
		{"run"}, {"check"}, {"lab"}, {"bench"}, {"bench", "backends"}, {"analyze"}, {"sim"}, {"sim", "cas"}, {"sim", "unity"},
		{"ctl"}, {"ctl", "--admin", closed, "reload"}, {"ctl", "--admin", closed, "backends"}, {"ctl", "--admin", closed, "events"},
		{"ctl", "--admin", closed, "drain", "cas/cas1"}, {"ctl", "--admin", closed, "unpin"},
	} {
		var out, errb bytes.Buffer
		code := run(append(args, "--help"), &out, &errb)
		if code != 0 || !strings.Contains(strings.ToLower(out.String()+errb.String()), "usage") {
			t.Errorf("%v --help: exit %d, output %q %q", args, code, out.String(), errb.String())
		}
	}
}
