//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// syscallSet expands a systemd system-call group (such as
// @system-service) into the calls it allows, groups within it included.
func syscallSet(t *testing.T, group string, into map[string]bool) {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "syscall-filter", group).Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s: %v", group, err)
	}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		name := strings.TrimSpace(line)
		switch {
		case name == "" || strings.HasPrefix(name, "#"):
		case strings.HasPrefix(name, "@"):
			syscallSet(t, name, into)
		default:
			into[name] = true
		}
	}
}

// unitFilter is the SystemCallFilter of the packaged unit, expanded.
func unitFilter(t *testing.T) map[string]bool {
	unit, err := os.ReadFile("../../packaging/stickylb.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^SystemCallFilter=(.+)$`).FindStringSubmatch(string(unit))
	if m == nil {
		t.Fatal("the unit has no SystemCallFilter")
	}
	allowed := map[string]bool{}
	for _, f := range strings.Fields(m[1]) {
		if strings.HasPrefix(f, "@") {
			syscallSet(t, f, allowed)
		} else {
			allowed[f] = true
		}
	}
	return allowed
}

// The packaged unit's system-call filter lets through every call the
// daemon makes: start-up with a listener of a port range (sk_lookup),
// health checks, proxied connections, a reload and a drained stop, run
// under strace. A call outside the filter would fail with EPERM in
// production (SystemCallErrorNumber), so each is a bug here.
func TestSyscallsWithinUnitFilter(t *testing.T) {
	for _, tool := range []string{"strace", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs it)", tool)
		}
	}
	if out, err := exec.Command("strace", "-f", "-qq", "-o", "/dev/null", "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here: %v %s", err, out)
	}
	allowed := unitFilter(t)
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	lo := ports[0] - ports[0]%100
	cfg := labConfig(ports, bs, "") +
		fmt.Sprintf("[listener.range]\nlisten = \"127.0.0.47:%d-%d\"\npool = \"cas\"\n", lo, lo+99)
	path := writeConfig(t, cfg)
	trace := filepath.Join(t.TempDir(), "strace.txt")
	p := startBinary(t, []string{"strace", "-f", "-qq", "-o", trace}, "run", "-c", path)
	addr := p.addrs(2)["l0"]
	for i := range 10 {
		if _, err := lbtest.Who(fmt.Sprintf("127.3.4.%d", i+1), addr); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"ctl", "--admin", "http://" + p.adminAddr(), "reload"}, &out, &errb); code != 0 {
		t.Fatalf("ctl reload: %s", errb.String())
	}
	p.signal(syscall.SIGTERM)
	p.wait(10 * time.Second)
	raw, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`(?m)^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)`)
	made := map[string]int{}
	for _, m := range call.FindAllStringSubmatch(string(raw), -1) {
		made[m[1]]++
	}
	if made["bpf"] == 0 || made["accept4"] == 0 {
		t.Fatalf("the trace holds no bpf or accept4 call: not the run this test means (%d calls seen)", len(made))
	}
	var outside []string
	for name := range made {
		if !allowed[name] && name != "execve" { // strace's own exec of the binary
			outside = append(outside, name)
		}
	}
	slices.Sort(outside)
	if len(outside) > 0 {
		t.Fatalf("the daemon makes system calls the unit's SystemCallFilter refuses: %v", outside)
	}
	t.Logf("%d distinct system calls, all within the unit's filter", len(made))
}

// The packaged unit's exposure, by systemd-analyze security, is at most
// 2.0 (it was 3.4 before the system-call filter, ProtectProc, UMask,
// RemoveIPC and PrivateMounts).
func TestUnitExposure(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (.ci/run installs systemd)")
	}
	out, _ := exec.Command("systemd-analyze", "security", "--offline=yes", "../../packaging/stickylb.service").CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for stickylb.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	var level float64
	fmt.Sscanf(string(m[1]), "%g", &level)
	if level > 2.0 {
		t.Fatalf("exposure %.1f, want at most 2.0:\n%s", level, out)
	}
	t.Logf("systemd-analyze security --offline=yes: exposure %.1f", level)
}
