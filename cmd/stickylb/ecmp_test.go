//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// ecmpMember is a stickylb member with its BIRD and announce loop.
type ecmpMember struct {
	member
	addr, dir string
	cas       map[string]string
	port      int
}

// bird starts BIRD in ns with the docs' config file conf, filled from
// vars, and returns its control socket.
func bird(t *testing.T, ns *lbtest.NetNS, dir, conf string, vars map[string]string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("../../docs/ecmp", conf))
	if err != nil {
		t.Fatal(err)
	}
	path, sock := filepath.Join(dir, conf), filepath.Join(dir, "bird.ctl")
	os.WriteFile(path, []byte(os.Expand(string(src), func(k string) string { return vars[k] })), 0o644)
	cmd := exec.Command(ns.Prefix()[0], append(ns.Prefix()[1:], "bird", "-f", "-c", path, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return sock
}

// nexthops counts the router's next hops for the virtual address.
func nexthops(ns *lbtest.NetNS, vip string) int {
	out, _ := exec.Command(ns.Prefix()[0], append(ns.Prefix()[1:], "ip", "route", "show", vip)...).Output()
	if n := strings.Count(string(out), "nexthop"); n > 0 {
		return n
	}
	if strings.Contains(string(out), "via") {
		return 1
	}
	return 0
}

// ECMP across members, as docs/cluster.md deploys it: a router namespace
// running BIRD learns the virtual address from each member's BIRD over
// BGP and spreads connections by a layer-4 hash, each member announcing
// only while `stickylb ctl readyz` says so (docs/ecmp/announce.sh).
// Clients whose connections spray over both members reach one CAS each;
// a member killed withdraws its route and moves no client; its return
// (no snapshot: it takes the table from its peer) moves none either.
func TestClusterECMPWithBGP(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("BIRD (Debian package bird2) is not installed; .ci/run installs it")
	}
	const vip = "10.99.0.50"
	router, clients := lbtest.NewNetNS(t), lbtest.NewNetNS(t)
	router.Run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
	clients.Link(router, "10.62.0.2", "10.62.0.1")
	clients.Run("ip", "route", "add", "default", "via", "10.62.0.1")
	router.Run("ip", "route", "add", "10.62.1.0/24", "via", "10.62.0.2") // the clients' own addresses
	key := clusterKey(t)
	addrs := []string{"10.61.1.2", "10.61.2.2"}
	ms := make([]*ecmpMember, 2)
	for i, a := range addrs {
		h := lbtest.NewNetNS(t)
		h.Link(router, a, fmt.Sprintf("10.61.%d.1", i+1))
		h.Run("ip", "route", "add", "default", "via", fmt.Sprintf("10.61.%d.1", i+1))
		h.Run("ip", "addr", "add", vip+"/32", "dev", "lo")
		m := &ecmpMember{member: member{host: h}, addr: a, dir: t.TempDir()}
		m.cas, m.port = casOn(t, h)
		sock := bird(t, h, m.dir, "bird-member.conf", map[string]string{"SELF": a, "VIP": vip, "MEMBER_AS": "65001",
			"ROUTER": fmt.Sprintf("10.61.%d.1", i+1), "ROUTER_AS": "65000"})
		m.start(t, addrs, key)
		announce := exec.Command(h.Prefix()[0], append(h.Prefix()[1:], "sh", "../../docs/ecmp/announce.sh")...)
		announce.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "BIRD_SOCKET="+sock,
			"STICKYLB_ADMIN=http://127.0.0.1:9090", "INTERVAL=0.2")
		if err := announce.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { announce.Process.Kill(); announce.Wait() })
		ms[i] = m
	}
	rdir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			for _, sock := range []string{filepath.Join(rdir, "bird.ctl"), filepath.Join(ms[0].dir, "bird.ctl")} {
				out, _ := exec.Command("birdc", "-s", sock, "show", "protocols", "all").CombinedOutput()
				out2, _ := exec.Command("birdc", "-s", sock, "show", "route", "all").CombinedOutput()
				t.Logf("%s:\n%s\n%s", sock, out, out2)
			}
		}
	})
	bird(t, router, rdir, "bird-router.conf", map[string]string{"ROUTER": "10.61.0.1", "ROUTER_AS": "65000",
		"MEMBER1": addrs[0], "MEMBER2": addrs[1], "MEMBER_AS": "65001"})
	// BIRD's router id names it; its sessions run from each link's address.
	lbtest.Eventually(t, 30*time.Second, "two next hops for the virtual address", func() bool { return nexthops(router, vip) == 2 })

	owner := round(t, clients, vip, nil)
	served := []int{strings.Count(ms[0].p.logs(), `msg="connection closed"`), strings.Count(ms[1].p.logs(), `msg="connection closed"`)}
	if served[0] == 0 || served[1] == 0 {
		t.Fatalf("the router sent %d connections to member 1 and %d to member 2: no spread", served[0], served[1])
	}
	ms[0].p.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	lbtest.Eventually(t, 20*time.Second, "the killed member's route withdrawn", func() bool { return nexthops(router, vip) == 1 })
	withdrawn := time.Since(killed)
	round(t, clients, vip, owner)
	ms[0].start(t, addrs, key)
	lbtest.Eventually(t, 30*time.Second, "the returned member's route back", func() bool { return nexthops(router, vip) == 2 })
	round(t, clients, vip, owner)
	t.Logf("ECMP over 2 members by BGP (BIRD): 40 clients x 4 connections, %d to member 1 and %d to member 2, 0 clients split; member 1 killed: route withdrawn in %v, 0 moved; back without a snapshot: 0 moved",
		served[0], served[1], withdrawn.Round(time.Millisecond))
}

// start starts (or restarts) the member's stickylb.
func (m *ecmpMember) start(t *testing.T, peers []string, key string) {
	cfg := strings.Replace(clusterConfig(10135, m.port, m.cas, m.addr, peers, key, ""), `listen = "127.0.0.1:0"`, `listen = "127.0.0.1:9090"`, 1)
	m.p = startBinary(t, m.host.Prefix(), "run", "-c", writeConfig(t, cfg))
	m.p.adminAddr()
}

// round connects 40 clients 4 times each to the virtual address from the
// clients' namespace; each connection has its own source port, so the
// router's hash spreads them over the members. No client may reach two
// CAS hosts, nor, with want, another than want's.
func round(t *testing.T, clients *lbtest.NetNS, vip string, want map[string]string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for c := range 40 {
		src := fmt.Sprintf("10.62.1.%d", c+1)
		clients.Run("ip", "addr", "replace", src+"/32", "dev", "lo")
		for range 4 {
			var b string
			var err error
			clients.Do(func() { b, err = lbtest.Who(src, netip.MustParseAddrPort(vip+":10135")) })
			if err != nil {
				t.Fatalf("client %s: %v", src, err)
			}
			if prev, ok := got[src]; ok && prev != b {
				t.Fatalf("client %s reached %s and %s: split over the members", src, prev, b)
			}
			if w, ok := want[src]; ok && w != b {
				t.Fatalf("client %s moved from %s to %s", src, w, b)
			}
			got[src] = b
		}
	}
	return got
}
