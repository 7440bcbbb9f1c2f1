//go:build linux

package main

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// ctlOut runs ctl in this process and returns its exit code and output.
func ctlOut(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := run(append([]string{"ctl"}, args...), &out, &errb)
	return code, out.String() + errb.String()
}

// tokenFile writes an admin token into dir.
func tokenFile(t *testing.T, dir string) string {
	path := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(path, []byte("0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The admin socket: mode 0660; every call over it works without the
// token that TCP asks for; ctl takes it from --socket, from -c's
// [admin] (before its admin.listen: a token file ctl cannot read does
// not matter then) and from the default config file without -c (issue
// 35: ctl ignored /etc/stickylb/lb.toml); a stop removes it.
func TestAdminSocketCtl(t *testing.T) {
	dir := t.TempDir()
	sock, token := filepath.Join(dir, "admin.sock"), tokenFile(t, dir)
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12"}, 1)
	cfg := strings.Replace(labConfig(ports, bs, ""), "[admin]\n", "[admin]\nsocket = \""+sock+"\"\ntoken_file = \""+token+"\"\n", 1)
	p := startBinary(t, nil, "run", "-c", writeConfig(t, cfg))
	admin := p.adminAddr()
	lbtest.Eventually(t, 10*time.Second, "the admin socket's line", func() bool { return strings.Contains(p.logs(), `msg="admin socket listening"`) })
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("the admin socket: %v %v, want mode 0660", fi, err)
	}
	if code, out := ctlOut("--socket", sock, "drain", "cas1"); code != 0 {
		t.Fatalf("ctl --socket drain without a token: exit %d\n%s", code, out)
	}
	if code, out := ctlOut("--admin", "http://"+admin, "ready", "cas1"); code == 0 || !strings.Contains(out, "token") {
		t.Fatalf("ctl over TCP without the token: exit %d\n%s", code, out)
	}
	ctlCfg := writeConfig(t, "[admin]\nlisten = \""+admin+"\"\nsocket = \""+sock+"\"\ntoken_file = \"/nonexistent/admin.token\"\n")
	if code, out := ctlOut("-c", ctlCfg, "ready", "cas1"); code != 0 {
		t.Fatalf("ctl -c with admin.socket: exit %d\n%s", code, out)
	}
	defer func(was string) { ctlDefaultConfig = was }(ctlDefaultConfig)
	ctlDefaultConfig = ctlCfg
	if code, out := ctlOut("maint", "cas2"); code != 0 {
		t.Fatalf("ctl with the default config file's admin.socket: exit %d\n%s", code, out)
	}
	ctlDefaultConfig = writeConfig(t, "[admin]\nlisten = \""+admin+"\"\ntoken_file = \""+token+"\"\n")
	if code, out := ctlOut("ready", "cas2"); code != 0 {
		t.Fatalf("ctl with the default config file's admin.listen and token: exit %d\n%s", code, out)
	}
	ctlDefaultConfig = filepath.Join(dir, "absent.toml")
	if code, out := ctlOut("readyz"); code != 0 && !strings.Contains(out, "127.0.0.1:9090") {
		t.Fatalf("ctl without a default file tried elsewhere than the built-in address: exit %d\n%s", code, out)
	}
	p.stop()
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("the admin socket is left after a stop")
	}
}

// A binary upgrade hands the admin socket over: its path exists through
// the whole hand-over (a loop that looks for it never misses it), and
// the new process answers on it; the old one, exiting, leaves it.
func TestBinaryUpgradeKeepsAdminSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	path, pidfile, _ := upgradeConfig(t, "127.0.0.1:0", sock)
	p := startBinary(t, nil, "run", "-c", path, "--pidfile", pidfile)
	p.adminAddr()
	oldPid := pidIn(t, pidfile, 0)
	var looks, missing atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			looks.Add(1)
			if _, err := os.Lstat(sock); err != nil {
				missing.Add(1)
			}
		}
	})
	newPid := upgradeBinary(t, pidfile, oldPid)
	lbtest.Eventually(t, 10*time.Second, "the old process gone", func() bool { return lbtest.Exited(oldPid) })
	close(stop)
	wg.Wait()
	if missing.Load() > 0 {
		t.Fatalf("the admin socket was missing %d of %d times looked for during the upgrade", missing.Load(), looks.Load())
	}
	if pid := infoPid(t, "--socket", sock); pid != newPid {
		t.Fatalf("pid %d answers the admin socket after the upgrade, want %d", pid, newPid)
	}
}

// listenAs serves HTTP on a port of host as user uid (the file system
// uid of the one thread that makes, accepts and answers its sockets),
// answering 200 to everything, and counts the requests that brought an
// Authorization header: a local user's process that took the admin
// port.
func listenAs(t *testing.T, uid int, host string) (string, *atomic.Int64) {
	t.Helper()
	var tokens atomic.Int64
	addr := make(chan string)
	var wg sync.WaitGroup
	var ln net.Listener
	wg.Go(func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0); e != 0 {
			close(addr)
			return
		}
		var err error
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			close(addr)
			return
		}
		addr <- ln.Addr().String()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if r, err := http.ReadRequest(bufio.NewReader(c)); err == nil && r.Header.Get("Authorization") != "" {
				tokens.Add(1)
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"))
			c.Close()
		}
	})
	a, ok := <-addr
	if !ok {
		t.Skip("cannot listen as another user (needs root)")
	}
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return a, &tokens
}

// ctl sends the token only to a server it can trust with it: not in
// clear text to another host, not to a loopback port another user's
// process holds (as one that won the port during an upgrade did, issue
// 33 finding 3), and to one of its own user it does. Calls that need no
// token still work. An admin socket in a folder every user may write is
// refused. Before, ctl sent "Authorization: Bearer ..." to whoever
// answered.
func TestCtlSendsTokenOnlyToTrustedServer(t *testing.T) {
	dir := t.TempDir()
	token := tokenFile(t, dir)
	start := time.Now()
	if code, out := ctlOut("--admin", "http://192.0.2.1:9090", "--token-file", token, "drain", "cas1"); code == 0 ||
		!strings.Contains(out, "refusing to send the admin token in clear text to 192.0.2.1:9090") || time.Since(start) > time.Second {
		t.Fatalf("plain HTTP to another host with the token: exit %d after %v\n%s", code, time.Since(start), out)
	}
	thief, got := listenAs(t, 65534, "127.0.0.1")
	if code, out := ctlOut("--admin", "http://"+thief, "--token-file", token, "reload"); code == 0 || !strings.Contains(out, "runs as") {
		t.Fatalf("the token to a port of nobody's: exit %d\n%s", code, out)
	}
	if code, out := ctlOut("--admin", "http://"+thief, "--token-file", token, "readyz"); code != 0 {
		t.Fatalf("readyz (no token needed) from nobody's port: exit %d\n%s", code, out)
	}
	if got.Load() != 0 {
		t.Fatalf("nobody's process received the token %d times", got.Load())
	}
	for _, host := range []string{"127.0.0.1", "::1"} {
		mine, gotMine := listenAs(t, os.Geteuid(), host)
		if code, out := ctlOut("--admin", "http://"+mine, "--token-file", token, "reload"); code != 0 || gotMine.Load() != 1 {
			t.Fatalf("the token to a port of this user's on %s: exit %d, %d tokens received\n%s", host, code, gotMine.Load(), out)
		}
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	ln, err := net.Listen("unix", filepath.Join(open, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if code, out := ctlOut("--socket", filepath.Join(open, "admin.sock"), "info"); code == 0 || !strings.Contains(out, "written by every user") {
		t.Fatalf("a socket in a folder every user may write: exit %d\n%s", code, out)
	}
}
