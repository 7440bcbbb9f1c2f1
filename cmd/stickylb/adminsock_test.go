//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// upgradeConfig is labConfig with the admin API on a fixed address (and
// socket, if not ""), for an upgrade to hand over.
func upgradeConfig(t *testing.T, admin, socket string) (path, pidfile string, bs []*lbtest.Backend) {
	t.Helper()
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	extra := "[admin]\nlisten = \"" + admin + "\""
	if socket != "" {
		extra += "\nsocket = \"" + socket + "\""
	}
	cfg := strings.Replace(labConfig(ports, bs, ""), "[admin]\nlisten = \"127.0.0.1:0\"", extra, 1)
	dir := t.TempDir()
	path = filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte(cfg), 0o644)
	return path, filepath.Join(dir, "stickylb.pid"), bs
}

// The admin port is never free during a binary upgrade: a process that
// tries to bind it in a loop from before SIGUSR2 until the new process
// serves never gets it, so it can neither answer ctl nor collect the
// token ctl sends. Before, the old process closed its admin listener for
// the new one to bind, and the loop won the port (issue 33, finding 3).
func TestBinaryUpgradeNeverFreesAdminPort(t *testing.T) {
	admin := lbtest.FreeAddr(t, "127.0.0.1")
	path, pidfile, _ := upgradeConfig(t, admin, "")
	p := startBinary(t, nil, "run", "-c", path, "--pidfile", pidfile)
	p.adminAddr()
	oldPid := pidIn(t, pidfile, 0)
	var tries, won atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tries.Add(1)
			if ln, err := net.Listen("tcp", admin); err == nil {
				won.Add(1)
				ln.Close() // let the new process have it, so the upgrade can finish
			}
		}
	})
	time.Sleep(50 * time.Millisecond)
	newPid := upgradeBinary(t, pidfile, oldPid) // the new process serves the admin API when it writes the pid file
	close(stop)
	wg.Wait()
	if pid := infoPid(t, "--admin", "http://"+admin); pid != newPid {
		t.Fatalf("after the upgrade pid %d answers the admin API, want the new process %d", pid, newPid)
	}
	if won.Load() > 0 {
		t.Fatalf("another process bound the admin address %s %d times in %d tries during the upgrade", admin, won.Load(), tries.Load())
	}
	t.Logf("admin address never free: 0 of %d binds during the upgrade succeeded", tries.Load())
}

// infoPid is the pid ctl info reports, ctl given args.
func infoPid(t *testing.T, args ...string) int {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append(append([]string{"ctl", "--json"}, args...), "info"), &out, &errb); code != 0 {
		t.Fatalf("ctl %v info: %s", args, errb.String())
	}
	var info struct{ Pid int }
	json.Unmarshal(out.Bytes(), &info)
	return info.Pid
}

// ctlCode runs ctl in this process and returns its exit code.
func ctlCode(args ...string) int {
	var out, errb bytes.Buffer
	return run(append([]string{"ctl"}, args...), &out, &errb)
}

// /readyz answers while 256 connections that send no request hold the
// admin listener: they cannot lock out keepalived's track script. Before,
// the listener served 64 connections at once and each held its slot for
// the 5 s header timeout, so /readyz waited behind them for 15 s or more
// (issue 33, finding 6).
func TestAdminReadyzWhileConnectionsHeld(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	p := startBinary(t, nil, "run", "-c", writeConfig(t, labConfig(ports, bs, "")))
	admin := p.adminAddr()
	lbtest.Eventually(t, 5*time.Second, "ready", func() bool { return ctlCode("--admin", "http://"+admin, "readyz") == 0 })
	for range 256 {
		c, err := net.Dial("tcp", admin)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("G")) // a request begun and never finished
		t.Cleanup(func() { c.Close() })
	}
	time.Sleep(100 * time.Millisecond)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 3 {
		start := time.Now()
		resp, err := client.Get("http://" + admin + "/readyz")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("/readyz %d with 256 connections held: %v after %v", i, err, took)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || took > time.Second {
			t.Fatalf("/readyz %d with 256 connections held: %d after %v; want 200 within 1s", i, resp.StatusCode, took)
		}
		t.Logf("/readyz %d with 256 connections held: %d in %v", i, resp.StatusCode, took.Round(time.Millisecond))
	}
}
