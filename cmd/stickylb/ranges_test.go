//go:build linux

package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// asNobody runs the binary as an unprivileged user, or skips where this
// test cannot change user (it is not root).
func asNobody(t *testing.T) []string {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the binary as nobody")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skipf("needs setpriv (util-linux): %v", err)
	}
	os.Chmod(filepath.Dir(binary), 0o755)
	os.Chmod(binary, 0o755)
	return []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}
}

// publicConfig writes a config file an unprivileged user can read.
func publicConfig(t *testing.T, text string) string {
	dir, err := os.MkdirTemp("", "stickylb-public")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "lb.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Without the capabilities sk_lookup needs, a listener of a few hundred
// ports falls back to a socket per port, says so, and serves every port;
// one of the whole dynamic range refuses to start, naming what is
// missing, and `check` says the same beforehand.
func TestRangeWithoutCapabilities(t *testing.T) {
	prefix := asNobody(t)
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.41", "127.0.0.42"}, 1)
	lo := ports[0] - ports[0]%100
	cfg := fmt.Sprintf("[admin]\nlisten = \"off\"\n[listener.rpc]\nlisten = \"127.0.0.40:%d-%d\"\npool = \"cas\"\n", lo, lo+199)
	cfg += fmt.Sprintf("[pool.cas.backend.cas1]\naddress = %q\n[pool.cas.backend.cas2]\naddress = %q\n", bs[0].Host, bs[1].Host)
	cfg += fmt.Sprintf("[pool.cas.check.tcp]\nport = %d\n", ports[0]) // a range alone gives a TCP check nothing to probe
	path := publicConfig(t, cfg)
	p := startBinary(t, prefix, "run", "-c", path)
	p.addrs(1)
	lbtest.Eventually(t, 5*time.Second, "the fallback warning", func() bool {
		return strings.Contains(p.logs(), "sk_lookup is not allowed here: binding a socket per port instead")
	})
	who, err := lbtest.Who("127.9.0.2", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.40"), uint16(ports[0])))
	if err != nil || who == "" {
		t.Fatalf("through the per-port fallback: %q, %v", who, err)
	}
	p.stop()

	whole := strings.Replace(cfg, fmt.Sprintf("%d-%d", lo, lo+199), "6005-59530", 1)
	path = publicConfig(t, whole)
	out, err := exec.Command(prefix[0], append(prefix[1:], binary, "check", "-c", path)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot take its 53526 ports: start-up will fail") || !strings.Contains(string(out), "CAP_BPF and CAP_NET_ADMIN") {
		t.Fatalf("check as nobody: %v (want exit 1: start-up will fail)\n%s", err, out)
	}
	out, err = exec.Command(prefix[0], append(prefix[1:], binary, "run", "-c", path)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "53526 ports need one socket steered by sk_lookup") || !strings.Contains(string(out), `range_mode = \"per-port\"`) {
		t.Fatalf("run as nobody: %v\n%s", err, out)
	}
}

// With CAP_BPF and CAP_NET_ADMIN and nothing else, as the drop-in in
// docs/deploy.md grants the packaged unit's user, an unprivileged process
// takes a range of 1,000 ports with one socket steered by sk_lookup, and
// says so in its listening line and /api/listeners.
func TestRangeWithDropInCapabilities(t *testing.T) {
	prefix := asNobody(t)
	prefix = append(prefix[:len(prefix)-1], "--inh-caps=-all,+bpf,+net_admin", "--ambient-caps=-all,+bpf,+net_admin")
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.43", "127.0.0.44"}, 1)
	lo := ports[0] - ports[0]%1000
	cfg := fmt.Sprintf("[admin]\nlisten = \"off\"\n[listener.rpc]\nlisten = \"127.0.0.45:%d-%d\"\npool = \"cas\"\n", lo, lo+999)
	cfg += fmt.Sprintf("[pool.cas.backend.cas1]\naddress = %q\n[pool.cas.backend.cas2]\naddress = %q\n", bs[0].Host, bs[1].Host)
	cfg += fmt.Sprintf("[pool.cas.check.tcp]\nport = %d\n", ports[0]) // a range alone gives a TCP check nothing to probe
	p := startBinary(t, prefix, "run", "-c", publicConfig(t, cfg))
	p.addrs(1)
	if want := fmt.Sprintf("ports=%d-%d taken_by=sk-lookup", lo, lo+999); !strings.Contains(p.logs(), want) {
		t.Fatalf("log lacks %q:\n%s", want, p.logs())
	}
	who, err := lbtest.Who("127.9.0.3", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.45"), uint16(ports[0])))
	if err != nil || who == "" {
		t.Fatalf("through the steered range: %q, %v", who, err)
	}
}

// JSON logs give every value a JSON form: a re-pinned client is its
// address (it was {}), and durations read as in the config ("2s"), not
// as nanoseconds.
func TestJSONLogValues(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	p := startBinary(t, nil, "run", "--log-format", "json", "-c", writeConfig(t, labConfig(ports, bs, "enabled = false\n")))
	addr := netip.MustParseAddrPort(jsonLogValue(t, p, "listening", "addr"))
	client := "127.6.1.1"
	first, err := lbtest.Who(client, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"ctl", "--admin", "http://" + jsonLogValue(t, p, "admin listening", "addr"), "maint", first}, &out, &errb); code != 0 {
		t.Fatalf("ctl maint: %s", errb.String())
	}
	if _, err := lbtest.Who(client, addr); err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 5*time.Second, "the re-pin line", func() bool {
		return strings.Contains(p.logs(), `"msg":"client re-pinned"`)
	})
	if !strings.Contains(p.logs(), `"client":"`+client+`"`) || strings.Contains(p.logs(), `"client":{}`) {
		t.Fatalf("the re-pin line does not name the client:\n%s", p.logs())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(10 * time.Second)
	if !strings.Contains(p.logs(), `"drain_timeout":"5s"`) {
		t.Fatalf("the stop line gives the drain timeout otherwise than as \"5s\":\n%s", p.logs())
	}
}

// jsonLogValue waits for the JSON log line with message msg and returns
// its string value of key.
func jsonLogValue(t *testing.T, p *proc, msg, key string) string {
	t.Helper()
	re := regexp.MustCompile(`"msg":"` + regexp.QuoteMeta(msg) + `".*?"` + key + `":"([^"]+)"`)
	var v string
	lbtest.Eventually(t, 10*time.Second, "the "+msg+" line", func() bool {
		if m := re.FindStringSubmatch(p.logs()); m != nil {
			v = m[1]
			return true
		}
		return false
	})
	return v
}

// sim unity fails (exit 1) when its fleet could not work at all, in text
// and in JSON, saying why; it used to exit 0 with no operation done.
func TestSimUnityFailsWithoutBalancer(t *testing.T) {
	for _, extra := range [][]string{nil, {"--json"}} {
		var out, errb bytes.Buffer
		args := append([]string{"sim", "unity", "--target", "127.0.0.99", "--epm-port", "1", "--duration", "300ms", "--sessions", "2"}, extra...)
		if code := run(args, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no operation succeeded") {
			t.Errorf("sim unity %v against nothing: exit %d, %q", extra, code, errb.String())
		}
	}
}

// check tests the directory the pins will be written to, as the user
// that runs it: a snapshot file in a directory that user cannot write
// (a relative snapshot_file beside a config in /etc, say) is a warning
// naming the file and the fix, where it was silent and run failed later.
func TestCheckSaysSnapshotUnwritable(t *testing.T) {
	prefix := asNobody(t)
	path := publicConfig(t, "[global]\nsnapshot_file = \"pins.json\"\n[listener.a]\nlisten = \"127.0.0.1:0\"\npool = \"p\"\nbackend_port = 1\n"+
		"[pool.p.backend.x]\naddress = \"127.0.0.11\"\n")
	out, _ := exec.Command(prefix[0], append(prefix[1:], binary, "check", "-c", path)...).CombinedOutput()
	if !strings.Contains(string(out), "global.snapshot_file: pins.json cannot be written in "+filepath.Dir(path)) ||
		!strings.Contains(string(out), "/var/lib/stickylb/pins.json") {
		t.Fatalf("check as nobody of a snapshot in a root-owned directory:\n%s", out)
	}
	out, _ = exec.Command(binary, "check", "-c", path).CombinedOutput()
	if strings.Contains(string(out), "cannot be written") {
		t.Fatalf("check as root, who may write there, warned:\n%s", out)
	}
}
