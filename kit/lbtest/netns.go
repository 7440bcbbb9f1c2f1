//go:build linux

package lbtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace a test made for itself, for faults that
// must not touch the machine: its own loopback, traffic control, port
// range. It is removed when the test ends.
type NetNS struct {
	Name  string
	fd    int
	t     testing.TB
	links []string // the peer ends of the links Link made
}

var nsSeq atomic.Int64

// NewNetNS makes a namespace with its loopback up, or skips the test
// saying why when this machine cannot (not root, no ip command, no
// namespaces in this sandbox). CI runs as root and makes them.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CI runs as root); this fault test is skipped")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the ip command (iproute2) is not installed; .ci/run installs it")
	}
	name := fmt.Sprintf("stickylb-test-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here (%v: %s); this fault test is skipped", err, strings.TrimSpace(string(out)))
	}
	n := &NetNS{Name: name, t: t}
	t.Cleanup(func() {
		if n.fd > 0 {
			unix.Close(n.fd)
		}
		exec.Command("ip", "netns", "del", name).Run()
	})
	fd, err := unix.Open("/var/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	n.fd = fd
	n.Run("ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command inside the namespace and fails the test if it does.
func (n *NetNS) Run(args ...string) {
	n.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("in %s: %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Prefix is what runs a command inside the namespace, for exec.
func (n *NetNS) Prefix() []string { return []string{"ip", "netns", "exec", n.Name} }

// Do runs f on a thread inside the namespace: the sockets f makes
// (listeners, dials) belong to it, and keep working from any goroutine
// after Do returns.
func (n *NetNS) Do(f func()) {
	n.t.Helper()
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		n.t.Fatalf("open this thread's namespace: %v", err)
	}
	defer unix.Close(self)
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		n.t.Fatalf("enter namespace %s: %v", n.Name, err)
	}
	defer func() {
		// A thread that cannot go back stays locked, and Go ends it
		// with the goroutine rather than reuse it.
		if err := unix.Setns(self, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	f()
}

// Link joins n and peer with a veth pair: n's end gets addr, peer's end
// peerAddr (both /24). The neighbour entries are static, so that once
// Cut takes the link down, packets across it vanish without a trace (no
// ARP failure, no ICMP): a host that fell off the network, a firewall
// that eats SYNs.
// It returns the two devices' names, for routes.
func (n *NetNS) Link(peer *NetNS, addr, peerAddr string) (dev, peerDev string) {
	n.t.Helper()
	seq := nsSeq.Add(1)
	dev, peerDev = fmt.Sprintf("slv%d-%d", os.Getpid()%100000, seq), fmt.Sprintf("slp%d-%d", os.Getpid()%100000, seq)
	if out, err := exec.Command("ip", "link", "add", dev, "netns", n.Name, "type", "veth", "peer", "name", peerDev, "netns", peer.Name).CombinedOutput(); err != nil {
		n.t.Skipf("cannot make a veth pair here (%v: %s); this fault test is skipped", err, strings.TrimSpace(string(out)))
	}
	n.Run("ip", "addr", "add", addr+"/24", "dev", dev)
	peer.Run("ip", "addr", "add", peerAddr+"/24", "dev", peerDev)
	n.Run("ip", "link", "set", dev, "up")
	peer.Run("ip", "link", "set", peerDev, "up")
	n.Run("ip", "neigh", "replace", peerAddr, "lladdr", peer.mac(peerDev), "dev", dev, "nud", "permanent")
	peer.Run("ip", "neigh", "replace", addr, "lladdr", n.mac(dev), "dev", peerDev, "nud", "permanent")
	n.links = append(n.links, peerDev)
	return dev, peerDev
}

// Cut takes down n's links to peer from the peer's side: from then on
// every packet n sends across them is dropped silently.
func (n *NetNS) Cut(peer *NetNS) {
	n.t.Helper()
	for _, dev := range n.links {
		peer.Run("ip", "link", "set", dev, "down")
	}
}

func (n *NetNS) mac(dev string) string {
	n.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.Name, "cat", "/sys/class/net/"+dev+"/address").Output()
	if err != nil {
		n.t.Fatalf("mac of %s in %s: %v", dev, n.Name, err)
	}
	return strings.TrimSpace(string(out))
}
