//go:build linux

package main

import (
	"bytes"
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

// keepalivedConf is one balancer's VRRP instance: the floating address
// on eth0, held only while `stickylb ctl readyz` succeeds (the recipe of
// docs/cluster.md).
func keepalivedConf(name string, priority int, vip string) string {
	return fmt.Sprintf(`global_defs {
  router_id %s
  script_user root
}
vrrp_script stickylb_ready {
  script "%s ctl --admin http://127.0.0.1:9090 readyz"
  interval 1
  fall 2
  rise 1
}
vrrp_instance cas_array {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int 1
  virtual_ipaddress {
    %s/24 dev eth0
  }
  track_script {
    stickylb_ready
  }
}
`, name, binary, priority, vip)
}

// startKeepalived runs keepalived's VRRP process in a host namespace until
// the test ends.
func startKeepalived(t *testing.T, h *lbtest.NetNS, conf string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalived.conf")
	os.WriteFile(path, []byte(conf), 0o644)
	argv := append(h.Prefix(), "keepalived", "--dont-fork", "--log-console", "--vrrp", "-f", path,
		"-p", filepath.Join(dir, "k.pid"), "-r", filepath.Join(dir, "v.pid"), "-c", filepath.Join(dir, "c.pid"))
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("keepalived in %s:\n%s", h.Name, out.String())
		}
	})
}

func holds(h *lbtest.NetNS, addr string) bool {
	out, _ := exec.Command("ip", "-n", h.Name, "-4", "addr", "show", "dev", "eth0").Output()
	return strings.Contains(string(out), " "+addr+"/")
}

// The HA pair of docs/cluster.md, built in namespaces: two balancers
// sharing pins, a floating address moved by keepalived on stickylb's
// readiness, three CAS hosts and a client fleet on one LAN. Kill the
// active balancer: the address moves and every client's next connection
// reaches its CAS as before; bring it back: it takes the table from its
// peer before it takes the address back, and again nobody moves.
func TestClusterHAPairKeepalived(t *testing.T) {
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived is not installed (.ci/run installs it from Debian); the HA pair test is skipped")
	}
	l := newLAN(t)
	casNS := l.host("10.9.0.11", "10.9.0.12", "10.9.0.13")
	var bs []*lbtest.Backend
	var ports []int
	casNS.Do(func() { bs, ports = lbtest.StartBackends(t, []string{"10.9.0.11", "10.9.0.12", "10.9.0.13"}, 1) })
	cas := map[string]string{}
	for _, b := range bs {
		cas[b.Name] = b.Host
	}
	var clients []string
	for i := range 30 {
		clients = append(clients, fmt.Sprintf("10.9.0.%d", 101+i))
	}
	clientNS := l.host(clients...)
	key := clusterKey(t)
	addrs := []string{"10.9.0.1", "10.9.0.2"}
	const vip = "10.9.0.50"
	lbs := make([]*member, 2)
	configs := make([]string, 2)
	for i, a := range addrs {
		h := l.host(a)
		src := clusterConfig(10135, ports[0], cas, a, addrs, key, "")
		configs[i] = writeConfig(t, strings.Replace(src, `listen = "127.0.0.1:0"`, `listen = "127.0.0.1:9090"`, 1))
		lbs[i] = &member{host: h, p: startBinary(t, h.Prefix(), "run", "-c", configs[i])}
	}
	for i, m := range lbs {
		lbtest.Eventually(t, 15*time.Second, "both members alive", func() bool { return strings.Count(m.ctl(t, "members"), "alive") == 2 })
		startKeepalived(t, m.host, keepalivedConf(fmt.Sprintf("lb%d", i+1), 150-50*i, vip))
	}
	lbtest.Eventually(t, 20*time.Second, "lb1 holding the floating address", func() bool { return holds(lbs[0].host, vip) })

	front := netip.MustParseAddrPort(vip + ":10135")
	pinned := map[string]string{}
	for _, c := range clients {
		pinned[c] = who(t, clientNS, c, front)
	}
	// Re-pins the hash cannot reproduce: lb1 takes cas1 out, its clients
	// come back and move. A balancer that had not heard would send them
	// back to cas1.
	lbs[0].ctl(t, "maint", "cas1")
	for c, b := range pinned {
		if b == "cas1" {
			pinned[c] = who(t, clientNS, c, front)
		}
	}
	lbs[0].ctl(t, "ready", "cas1")
	var held []*lbtest.Client
	for _, c := range clients[:10] { // sessions open through lb1
		var cl *lbtest.Client
		var err error
		clientNS.Do(func() { cl, err = lbtest.Connect(c, front) })
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, cl)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()

	killed := time.Now()
	lbs[0].p.signal(syscall.SIGKILL)
	lbtest.Eventually(t, 20*time.Second, "lb2 taking the floating address", func() bool { return holds(lbs[1].host, vip) })
	moveTook := time.Since(killed)
	moved := reconnectAll(t, clientNS, front, pinned)
	if moved != 0 {
		t.Fatalf("%d of %d clients reached another CAS through lb2 after lb1 died", moved, len(clients))
	}

	lbs[0].p = startBinary(t, lbs[0].host.Prefix(), "run", "-c", configs[0]) // no snapshot: its pins come from lb2
	back := time.Now()
	lbtest.Eventually(t, 30*time.Second, "lb1 taking the floating address back", func() bool { return holds(lbs[0].host, vip) })
	backTook := time.Since(back)
	if moved := reconnectAll(t, clientNS, front, pinned); moved != 0 {
		t.Fatalf("%d of %d clients reached another CAS through the restarted lb1", moved, len(clients))
	}
	t.Logf("HA pair: %d clients, re-pins included; lb1 killed: address on lb2 after %s, 0 moved; lb1 back: address back after %s (sync, then readiness), 0 moved",
		len(clients), moveTook.Round(100*time.Millisecond), backTook.Round(100*time.Millisecond))
}

// reconnectAll connects every client through front again, retrying while
// the address settles, and counts those that reached another CAS.
func reconnectAll(t *testing.T, ns *lbtest.NetNS, front netip.AddrPort, pinned map[string]string) int {
	t.Helper()
	moved := 0
	for c, want := range pinned {
		var got string
		lbtest.Eventually(t, 10*time.Second, "a connection through the floating address", func() bool {
			var err error
			ns.Do(func() { got, err = lbtest.Who(c, front) })
			return err == nil
		})
		if got != want {
			t.Errorf("client %s: now on %s, pinned to %s", c, got, want)
			moved++
		}
	}
	return moved
}
