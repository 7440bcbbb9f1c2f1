//go:build linux

package main

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// nsRig is stickylb running inside a network namespace the test made,
// with backends and clients placed in it or in a second namespace joined
// to it by a link the test can cut.
type nsRig struct {
	ns, far *lbtest.NetNS
	p       *proc
	port    uint16 // stickylb's listening port
}

// startNSRig starts stickylb in a fresh namespace (listening on every
// address there) in front of backends; place starts them and returns
// them with their port. pool is extra [pool.cas] keys.
func startNSRig(t *testing.T, pool string, place func(r *nsRig) ([]*lbtest.Backend, int)) *nsRig {
	t.Helper()
	r := &nsRig{ns: lbtest.NewNetNS(t)}
	r.far = lbtest.NewNetNS(t)
	r.ns.Link(r.far, "10.77.0.1", "10.77.0.2")
	bs, port := place(r)
	cfg := labConfig([]int{port}, bs, "interval = \"200ms\"\ntimeout = \"300ms\"\nfall = 2\n")
	cfg = strings.Replace(cfg, "[pool.cas.health]\ninterval = \"100ms\"\n", "[pool.cas]\n"+pool+"\n[pool.cas.health]\n", 1)
	cfg = strings.Replace(cfg, "listen = \"127.0.0.1:0\"\npool", "listen = \"0.0.0.0:0\"\npool", 1)
	r.p = startBinary(t, r.ns.Prefix(), "run", "-c", writeConfig(t, cfg))
	r.port = r.p.addrs(1)["l0"].Port()
	return r
}

// inNS starts backends on hosts in one namespace.
func inNS(t *testing.T, ns *lbtest.NetNS, hosts []string) (bs []*lbtest.Backend, port int) {
	var ports []int
	ns.Do(func() { bs, ports = lbtest.StartBackends(t, hosts, 1) })
	return bs, ports[0]
}

// connect opens a proxied connection from src, in namespace ns, to
// stickylb's address dst there.
func (r *nsRig) connect(ns *lbtest.NetNS, src, dst string) (c *lbtest.Client, err error) {
	ns.Do(func() { c, err = lbtest.Connect(src, netip.AddrPortFrom(netip.MustParseAddr(dst), r.port)) })
	return c, err
}

func (r *nsRig) who(t *testing.T, src string) string {
	t.Helper()
	c, err := r.connect(r.ns, src, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return c.Backend
}

// A backend whose SYNs vanish (its link cut, no ICMP, no RST) is found
// down by the active check within interval x fall + timeout; its clients
// move to the live CAS without being left waiting on the dead one, and
// no client of the live CAS moves.
func TestFaultSYNBlackhole(t *testing.T) {
	r := startNSRig(t, "connect_timeout = \"500ms\"", func(r *nsRig) ([]*lbtest.Backend, int) {
		cas1 := lbtest.NewBackend(t, "cas1", "10.77.0.2")
		var port int
		var err error
		r.far.Do(func() { port, err = cas1.ListenPort(0) })
		if err != nil {
			t.Fatal(err)
		}
		cas2 := lbtest.NewBackend(t, "cas2", "127.0.0.12")
		r.ns.Do(func() { err = cas2.Listen(port) })
		if err != nil {
			t.Fatal(err)
		}
		return []*lbtest.Backend{cas1, cas2}, port
	})
	owner := map[string]string{}
	for i := range 40 {
		src := lbtest.ClientIP(9800 + i)
		owner[src] = r.who(t, src)
	}
	start := time.Now()
	r.ns.Cut(r.far)
	lbtest.Eventually(t, 10*time.Second, "cas1 down", func() bool { return strings.Contains(r.p.logs(), "backend down") })
	detect := time.Since(start)
	moved, slowest := 0, time.Duration(0)
	for src, was := range owner {
		t0 := time.Now()
		now := r.who(t, src)
		slowest = max(slowest, time.Since(t0))
		switch {
		case was == "cas2" && now != "cas2":
			t.Fatalf("client %s of the live cas2 moved to %s", src, now)
		case was == "cas1" && now != "cas2":
			t.Fatalf("client %s of the blackholed cas1 went to %s", src, now)
		case was == "cas1":
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no client was on cas1: the blackhole tested nothing")
	}
	// No wall-clock bound on the slowest connect here: lbtest.Connect's
	// 5s greeting deadline already fails one left to the kernel's SYN
	// retries (minutes), and a tighter bound only measures how busy the
	// machine is. Once cas1 is down no client is dialed to it at all.
	t.Logf("SYN blackhole: cas1 down %s after its link was cut (interval 200ms, fall 2, timeout 300ms); %d of %d clients moved, all of them cas1's; slowest connect after %s",
		detect.Round(time.Millisecond), moved, len(owner), slowest.Round(time.Millisecond))
}

// With the namespace's ephemeral range cut to ten ports, stickylb runs
// out of local ports toward a backend: those clients are refused at once
// as a local error, no backend is marked down and no client moves.
func TestFaultPortExhaustion(t *testing.T) {
	r := startNSRig(t, "", func(r *nsRig) ([]*lbtest.Backend, int) {
		r.ns.Run("sh", "-c", "echo 40000 40009 > /proc/sys/net/ipv4/ip_local_port_range")
		return inNS(t, r.ns, []string{"127.0.0.11", "127.0.0.12"})
	})
	// The admin API is in the namespace; its one connection is made there
	// before the ports run out, and kept.
	checks := watchChecks(t, r.p.adminAddr(), func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		r.ns.Do(func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
		return c, err
	})
	var held []*lbtest.Client
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	refused := 0
	for i := 0; i < 60 && refused < 3; i++ {
		c, err := r.connect(r.ns, lbtest.ClientIP(9900+i), "127.0.0.1")
		if err != nil {
			refused++
			continue
		}
		held = append(held, c)
	}
	if refused == 0 {
		t.Fatalf("%d connections held and none refused: the port range did not bite", len(held))
	}
	// Five checks of each backend, counted rather than waited for (fall is
	// 2): a busy machine that checks slowly only makes this take longer.
	lbtest.Eventually(t, time.Minute, "5 checks of every backend with the ports taken", func() bool { return checks.atLeast(5) })
	logs := r.p.logs()
	for _, bad := range []string{"backend down", "re-pinned", "passive check"} {
		if strings.Contains(logs, bad) {
			t.Fatalf("port exhaustion was blamed on a backend (%q):\n%s", bad, logs)
		}
	}
	if !strings.Contains(logs, "errno=EADDRNOTAVAIL") {
		t.Fatalf("no EADDRNOTAVAIL logged:\n%s", logs)
	}
	t.Logf("port range of 10: %d connections held, then clients refused as local errors; no backend blamed", len(held))
}

var vanishedLine = regexp.MustCompile(`msg="connection closed" listener=l0 client=10\.77\.0\.2:\d+ .*error="([^"]*)"`)

// A client that vanishes (its link cut: no FIN, no RST) is found by TCP
// keepalive on the client leg, and both legs are closed.
func TestFaultClientVanishes(t *testing.T) {
	r := startNSRig(t, "keepalive = \"1s\"", func(r *nsRig) ([]*lbtest.Backend, int) {
		return inNS(t, r.ns, []string{"127.0.0.11", "127.0.0.12"})
	})
	c, err := r.connect(r.far, "10.77.0.2", "10.77.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	r.ns.Cut(r.far)
	lbtest.Eventually(t, 20*time.Second, "the vanished client's connection closed", func() bool { return vanishedLine.MatchString(r.p.logs()) })
	m := vanishedLine.FindStringSubmatch(r.p.logs())
	t.Logf("vanished client: both legs closed %s after its link was cut (keepalive 1s, 3 probes): %s", time.Since(start).Round(100*time.Millisecond), m[1])
}
