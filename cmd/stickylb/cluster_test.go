//go:build linux

package main

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// lan is one Ethernet segment: a namespace holding a bridge, and hosts
// (namespaces of their own) plugged into it by veth pairs, so that the
// test can unplug one host and plug it back.
type lan struct {
	t     *testing.T
	sw    *lbtest.NetNS
	ports map[*lbtest.NetNS]string // the bridge's end of each host's cable
}

var lanSeq atomic.Int64

func newLAN(t *testing.T) *lan {
	l := &lan{t: t, sw: lbtest.NewNetNS(t), ports: map[*lbtest.NetNS]string{}}
	l.sw.Run("ip", "link", "add", "br0", "type", "bridge")
	l.sw.Run("ip", "link", "set", "br0", "up")
	return l
}

// host makes a namespace plugged into the LAN with addrs (each /24) on
// its eth0.
func (l *lan) host(addrs ...string) *lbtest.NetNS {
	l.t.Helper()
	h := lbtest.NewNetNS(l.t)
	port := fmt.Sprintf("lp%d-%d", os.Getpid()%10000, lanSeq.Add(1))
	if out, err := exec.Command("ip", "link", "add", "eth0", "netns", h.Name, "type", "veth", "peer", "name", port, "netns", l.sw.Name).CombinedOutput(); err != nil {
		l.t.Skipf("cannot make a veth pair here (%v: %s); this cluster test is skipped", err, strings.TrimSpace(string(out)))
	}
	l.sw.Run("ip", "link", "set", port, "master", "br0", "up")
	for _, a := range addrs {
		h.Run("ip", "addr", "add", a+"/24", "dev", "eth0")
	}
	h.Run("ip", "link", "set", "eth0", "up")
	l.ports[h] = port
	return h
}

// unplug and plug cut a host off the LAN and back: its packets vanish
// while it is off.
func (l *lan) unplug(h *lbtest.NetNS) { l.sw.Run("ip", "link", "set", l.ports[h], "down") }
func (l *lan) plug(h *lbtest.NetNS)   { l.sw.Run("ip", "link", "set", l.ports[h], "up") }

// member is a stickylb process in its own host namespace.
type member struct {
	host *lbtest.NetNS
	p    *proc
}

func clusterKey(t *testing.T) string {
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return key
}

// clusterConfig is a member's lb.toml: one listener on every address in
// front of CAS hosts, and the cluster section.
func clusterConfig(listenPort, backendPort int, cas map[string]string, self string, peers []string, key, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\ndrain_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n")
	fmt.Fprintf(&b, "[listener.l0]\nlisten = \"0.0.0.0:%d\"\npool = \"cas\"\nbackend_port = %d\n", listenPort, backendPort)
	b.WriteString("[pool.cas.health]\ninterval = \"200ms\"\n")
	for _, name := range []string{"cas1", "cas2", "cas3"} {
		fmt.Fprintf(&b, "[pool.cas.backend.%s]\naddress = %q\n", name, cas[name])
	}
	fmt.Fprintf(&b, "[cluster]\nbind = \"%s:7946\"\npeers = [\"%s:7946\"]\nsecret_file = %q\nnode_name = %q\nsync_timeout = \"5s\"\nsync_interval = \"1s\"\n%s",
		self, strings.Join(peers, ":7946\", \""), key, self, extra)
	return b.String()
}

// ctlIn runs `stickylb ctl` inside a member's namespace.
func (m *member) ctl(t *testing.T, args ...string) string {
	t.Helper()
	argv := append(m.host.Prefix(), append([]string{binary, "ctl", "--admin", "http://" + m.p.adminAddr()}, args...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// who connects from src inside ns to addr and says which CAS answered.
func who(t *testing.T, ns *lbtest.NetNS, src string, addr netip.AddrPort) string {
	t.Helper()
	var b string
	var err error
	ns.Do(func() { b, err = lbtest.Who(src, addr) })
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Three members, two on one side of a partition and one on the other;
// each has its CAS hosts and its clients on its own loopback, so only
// the members' talk crosses the LAN. Each side re-pins one client its own
// way while they cannot talk; once they can, every member sends the
// client to the newer decision's CAS.
func TestClusterPartitionConverges(t *testing.T) {
	l := newLAN(t)
	key := clusterKey(t)
	addrs := []string{"10.9.0.1", "10.9.0.2", "10.9.0.3"}
	ms := make([]*member, 3)
	for i, a := range addrs {
		h := l.host(a)
		cas, port := casOn(t, h)
		ms[i] = &member{host: h, p: startBinary(t, h.Prefix(), "run", "-c", writeConfig(t, clusterConfig(10135, port, cas, a, addrs, key, "")))}
	}
	for _, m := range ms {
		lbtest.Eventually(t, 15*time.Second, "three members alive", func() bool { return strings.Count(m.ctl(t, "members"), "alive") == 3 })
	}
	const client = "127.1.0.1" // the same client on every member's loopback
	local := netip.MustParseAddrPort("127.0.0.1:10135")
	pinOfClient := func(m *member, client string) string {
		return strings.Fields(m.ctl(t, "pin", client) + " x x x x x")[4]
	}
	pinOf := func(m *member) string { return pinOfClient(m, client) }
	first := who(t, ms[0].host, client, local)
	lbtest.Eventually(t, 5*time.Second, "the first pin everywhere", func() bool { return pinOf(ms[2]) == first })

	l.unplug(ms[2].host)
	ms[0].ctl(t, "maint", first)
	sideA := who(t, ms[0].host, client, local) // member 1 re-pins; member 2 hears of it
	ms[0].ctl(t, "ready", first)
	// Member 3 decides later: its stamp is newer. A clock gap, not an
	// ordering wait: a busy machine only makes it wider.
	time.Sleep(20 * time.Millisecond)
	ms[2].ctl(t, "maint", first)
	ms[2].ctl(t, "maint", sideA)
	sideB := who(t, ms[2].host, client, local)
	ms[2].ctl(t, "ready", first)
	ms[2].ctl(t, "ready", sideA)
	if sideA == first || sideB == first || sideB == sideA {
		t.Fatalf("re-pins: first %s, side A %s, side B %s; want three backends", first, sideA, sideB)
	}
	lbtest.Eventually(t, 5*time.Second, "member 2 holding side A's decision", func() bool { return pinOf(ms[1]) == sideA })
	// Give a leak its chance: far longer than a change takes to cross
	// (TestClusterMembersAgree), and at least until a change made on side
	// A after side B's decision has crossed there, so that a busy machine,
	// where gossip is slow, waits as many rounds as an idle one.
	const marker = "127.1.0.2"
	floor := time.Now().Add(500 * time.Millisecond)
	mark := who(t, ms[0].host, marker, local)
	lbtest.Eventually(t, 20*time.Second, "a later change crossing side A", func() bool { return pinOfClient(ms[1], marker) == mark })
	time.Sleep(time.Until(floor))
	if a, b := pinOf(ms[0]), pinOf(ms[2]); a != sideA || b != sideB {
		t.Fatalf("while cut off, member 1 holds %s and member 3 %s; want %s and %s: the partition leaked", a, b, sideA, sideB)
	}

	l.plug(ms[2].host)
	healed := time.Now()
	lbtest.Eventually(t, 20*time.Second, "every member on the newer decision", func() bool {
		return pinOf(ms[0]) == sideB && pinOf(ms[1]) == sideB && pinOf(ms[2]) == sideB
	})
	took := time.Since(healed)
	for i, m := range ms {
		if got := who(t, m.host, client, local); got != sideB {
			t.Fatalf("after the heal member %d sends the client to %s; want %s", i+1, got, sideB)
		}
	}
	t.Logf("partition healed: all three members converged on side B's newer re-pin (%s over side A's %s) %s after the link came back (sync_interval 1s)",
		sideB, sideA, took.Round(time.Millisecond))
}

// casOn starts cas1-3 on the loopback of namespace h, on one port, and
// returns their addresses by name and the port.
func casOn(t *testing.T, h *lbtest.NetNS) (map[string]string, int) {
	var bs []*lbtest.Backend
	var ports []int
	h.Do(func() { bs, ports = lbtest.StartBackends(t, casHosts, 1) })
	cas := map[string]string{}
	for _, b := range bs {
		cas[b.Name] = b.Host
	}
	return cas, ports[0]
}
