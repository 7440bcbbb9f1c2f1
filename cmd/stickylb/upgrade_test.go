//go:build linux

package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// A binary upgrade under load: SIGUSR2 starts the new process on the
// same sockets, which restores the pins and operator decisions; 10 open
// connections of the old one keep echoing until they end, 0 of the
// connections made during the hand-over fail, 0 of 30 pinned clients
// move, a drain and a weight set by the operator hold in the new
// process, and the old one exits when its last connection closes.
// Before, an upgrade was a restart: every open connection was cut at
// drain_timeout.
func TestBinaryUpgrade(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}, 1)
	dir := t.TempDir()
	listen, admin := lbtest.FreeAddr(t, "127.0.0.1"), lbtest.FreeAddr(t, "127.0.0.1")
	cfg := strings.NewReplacer("[global]\n", "[global]\nsnapshot_file = \"pins.json\"\ndrain_timeout = \"1m\"\n", "drain_timeout = \"5s\"\n", "",
		"[admin]\nlisten = \"127.0.0.1:0\"", "[admin]\nlisten = \""+admin+"\"", "[listener.l0]\nlisten = \"127.0.0.1:0\"", "[listener.l0]\nlisten = \""+listen+"\"").
		Replace(labConfig(ports, bs, "enabled = false\n"))
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte(cfg), 0o644)
	pidfile := filepath.Join(dir, "stickylb.pid")
	p := startBinary(t, nil, "run", "-c", path, "--pidfile", pidfile)
	addr := p.addrs(1)["l0"]
	ctl := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := run(append([]string{"ctl", "--admin", "http://" + admin}, args...), &out, &errb); code != 0 {
			t.Fatalf("ctl %v: %s", args, errb.String())
		}
		return out.String()
	}
	oldPid := pidIn(t, pidfile, 0)
	owner := map[string]string{}
	for i := range 30 {
		src := fmt.Sprintf("127.6.3.%d", i+1)
		owner[src] = mustWho(t, src, addr)
	}
	ctl("drain", "cas3")
	ctl("weight", "cas1", "3")
	var open []*lbtest.Client
	for i := range 10 {
		c, err := lbtest.Connect(fmt.Sprintf("127.6.4.%d", i+1), addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}

	var failed, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := lbtest.Who(fmt.Sprintf("127.6.5.%d", i%200+1), addr); err != nil {
				failed.Add(1)
			}
			done.Add(1)
		}
	})
	time.Sleep(200 * time.Millisecond)
	newPid := upgradeBinary(t, pidfile, oldPid)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	for i, c := range open {
		c.Write([]byte("still here\n"))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if line, err := c.R.ReadString('\n'); err != nil || line != "still here\n" {
			t.Fatalf("open connection %d of the old process broke in the upgrade: %q %v", i, line, err)
		}
	}
	moved := 0
	for src, was := range owner {
		if mustWho(t, src, addr) != was {
			moved++
		}
	}
	backends := ctl("backends")
	if failed.Load() > 0 || moved > 0 || !regexp.MustCompile(`cas3\s+\S+\s+drain`).MatchString(backends) || !regexp.MustCompile(`cas1\s+\S+\s+up\s+(?:since start|\S+)\s+3\s`).MatchString(backends) {
		t.Fatalf("upgrade under load: %d of %d connections failed, %d of 30 clients moved; the new process's backends:\n%s", failed.Load(), done.Load(), moved, backends)
	}
	// The open connections moved with the rest: the old process has
	// nothing to finish.
	lbtest.Eventually(t, 10*time.Second, "the old process gone, its connections moved", func() bool { return lbtest.Exited(oldPid) })
	if conns := ctl("connections"); strings.Count(conns, "127.6.4.") < 10 {
		t.Fatalf("the new process lists fewer than the 10 connections open across the upgrade:\n%s", conns)
	}
	for _, c := range open {
		c.Close()
	}
	t.Logf("upgrade: new pid %d took over; %d connections during the hand-over, 0 failed; 10 of 10 open connections moved; 0 of 30 clients moved; drain and weight kept", newPid, done.Load())
}

// pidIn waits for the pid file to name a process other than not, and
// returns it.
func pidIn(t *testing.T, pidfile string, not int) int {
	t.Helper()
	var pid int
	lbtest.Eventually(t, 20*time.Second, "a process's pid in "+pidfile, func() bool {
		pid = lbtest.PidIn(pidfile)
		return pid != 0 && pid != not
	})
	return pid
}

// upgradeBinary sends the process oldPid the upgrade signal and returns
// the process that took over, as its pid file names it.
func upgradeBinary(t *testing.T, pidfile string, oldPid int) int {
	t.Helper()
	syscall.Kill(oldPid, syscall.SIGUSR2)
	newPid := pidIn(t, pidfile, oldPid)
	t.Cleanup(func() { syscall.Kill(newPid, syscall.SIGKILL) })
	return newPid
}

func mustWho(t *testing.T, src string, addr netip.AddrPort) string {
	t.Helper()
	b, err := lbtest.Who(src, addr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An open connection outlives the old process and its drain_timeout: it
// moves to the new process at the upgrade, and the old one exits at once
// with nothing left to finish (issue 34: before, it was cut when
// drain_timeout ran out).
func TestBinaryUpgradeMovesOpenConnection(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, []string{"127.0.0.11"}, 1)
	dir := t.TempDir()
	listen := lbtest.FreeAddr(t, "127.0.0.1")
	cfg := strings.NewReplacer("drain_timeout = \"5s\"", "drain_timeout = \"1s\"",
		"[listener.l0]\nlisten = \"127.0.0.1:0\"", "[listener.l0]\nlisten = \""+listen+"\"").Replace(labConfig(ports, bs, "enabled = false\n"))
	path := filepath.Join(dir, "lb.toml")
	os.WriteFile(path, []byte(cfg), 0o644)
	pidfile := filepath.Join(dir, "stickylb.pid")
	p := startBinary(t, nil, "run", "-c", path, "--pidfile", pidfile)
	addr := p.addrs(1)["l0"]
	oldPid := pidIn(t, pidfile, 0)
	c, err := lbtest.Connect("127.6.6.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	upgradeBinary(t, pidfile, oldPid)
	lbtest.Eventually(t, 5*time.Second, "the old process gone, with nothing to drain", func() bool { return lbtest.Exited(oldPid) })
	time.Sleep(1500 * time.Millisecond) // past drain_timeout
	c.Write([]byte("after the upgrade\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := c.R.ReadString('\n'); err != nil || line != "after the upgrade\n" {
		t.Fatalf("the connection open across the upgrade: %q %v", line, err)
	}
}

// A member of a cluster upgraded under its clients: it leaves the
// cluster, the new process joins under the same name and address and
// takes the table, the old one finishes its connection; no client moves
// at either member.
func TestBinaryUpgradeInCluster(t *testing.T) {
	l := newLAN(t)
	key := clusterKey(t)
	addrs := []string{"10.9.1.1", "10.9.1.2"}
	ms := make([]*member, 2)
	pidfiles := make([]string, 2)
	for i, a := range addrs {
		h := l.host(a)
		cas, port := casOn(t, h)
		cfg := strings.Replace(clusterConfig(10135, port, cas, a, addrs, key, ""), `listen = "127.0.0.1:0"`, `listen = "127.0.0.1:9090"`, 1)
		pidfiles[i] = filepath.Join(t.TempDir(), "stickylb.pid")
		ms[i] = &member{host: h, p: startBinary(t, h.Prefix(), "run", "-c", writeConfig(t, cfg), "--pidfile", pidfiles[i])}
	}
	for _, m := range ms {
		lbtest.Eventually(t, 15*time.Second, "two members alive", func() bool { return strings.Count(m.ctl(t, "members"), "alive") == 2 })
	}
	local := netip.MustParseAddrPort("127.0.0.1:10135")
	owner := map[string]string{}
	for i := range 20 {
		src := fmt.Sprintf("127.1.1.%d", i+1)
		owner[src] = who(t, ms[0].host, src, local)
	}
	var c *lbtest.Client
	ms[0].host.Do(func() { c, _ = lbtest.Connect("127.1.2.1", local) })
	defer c.Close()
	upgradeBinary(t, pidfiles[0], pidIn(t, pidfiles[0], 0))
	lbtest.Eventually(t, 15*time.Second, "the upgraded member back in the cluster", func() bool {
		return strings.Count(ms[1].ctl(t, "members"), "alive") == 2
	})
	c.Write([]byte("still here\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if line, err := c.R.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("the old process's connection broke in the upgrade: %q %v", line, err)
	}
	moved := 0
	for src, was := range owner {
		for _, m := range ms {
			if who(t, m.host, src, local) != was {
				moved++
			}
		}
	}
	if moved > 0 {
		t.Fatalf("%d of 40 client connections (20 clients at 2 members) reached another CAS after the upgrade", moved)
	}
}
