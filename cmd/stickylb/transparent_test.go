//go:build linux

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/capture"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/proxy"
)

// whoami is a CAS stand-in that greets each connection with its name and
// the address it sees the connection come from, then echoes, and records
// every address that connected.
type whoami struct {
	name string
	mu   sync.Mutex
	seen map[netip.Addr]int
	wg   sync.WaitGroup
}

func (w *whoami) serve(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() }) // before the wait startCAS registered first
	w.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			w.mu.Lock()
			w.seen[from]++
			w.mu.Unlock()
			w.wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", w.name, from)
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			})
		}
	})
}

// transparentRig is three namespaces routed as docs/deploy.md says:
// clients (10.10.1.2-9) reach stickylb on 10.10.1.1; the CAS hosts
// (10.10.2.11, .12) route replies through the balancer (10.10.2.1),
// whose policy rule delivers them, addressed to clients, to its own
// transparent sockets.
type transparentRig struct {
	clients, lb, cas *lbtest.NetNS
	hosts            []*whoami
	p                *proc
	ports            []int
	casDev           string // the CAS hosts' interface
	lbCasDev         string // the balancer's interface to the CAS hosts
}

func startTransparentRig(t *testing.T, poolExtra ...string) *transparentRig {
	r := &transparentRig{clients: lbtest.NewNetNS(t), lb: lbtest.NewNetNS(t), cas: lbtest.NewNetNS(t)}
	_, clientDev := r.lb.Link(r.clients, "10.10.1.1", "10.10.1.2")
	casSide, casDev := r.lb.Link(r.cas, "10.10.2.1", "10.10.2.11")
	r.casDev, r.lbCasDev = casDev, casSide
	for i := 3; i <= 9; i++ {
		r.clients.Run("ip", "addr", "add", fmt.Sprintf("10.10.1.%d/24", i), "dev", clientDev)
	}
	r.clients.Run("ip", "route", "add", "default", "via", "10.10.1.1")
	r.cas.Run("ip", "addr", "add", "10.10.2.12/24", "dev", casDev)
	r.cas.Run("ip", "route", "add", "default", "via", "10.10.2.1")
	// The balancer: replies from the CAS side are for local sockets.
	r.lb.Run("ip", "rule", "add", "iif", casSide, "lookup", "100")
	r.lb.Run("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
	r.lb.Run("sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter")
	r.cas.Do(func() { r.startCAS(t) })
	var b strings.Builder
	b.WriteString("[global]\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n")
	for i, port := range r.ports {
		fmt.Fprintf(&b, "[listener.l%d]\nlisten = \"10.10.1.1:%d\"\npool = \"cas\"\n", i, port)
	}
	b.WriteString("[pool.cas]\ntransparent = true\n" + strings.Join(poolExtra, "") + "[pool.cas.health]\ninterval = \"200ms\"\n")
	b.WriteString("[pool.cas.backend.cas1]\naddress = \"10.10.2.11\"\n[pool.cas.backend.cas2]\naddress = \"10.10.2.12\"\n")
	r.p = startBinary(t, r.lb.Prefix(), "run", "-c", writeConfig(t, b.String()))
	r.p.addrs(len(r.ports))
	return r
}

// startCAS runs cas1 and cas2 on the same two free ports.
func (r *transparentRig) startCAS(t *testing.T) {
	r.hosts = []*whoami{{name: "cas1", seen: map[netip.Addr]int{}}, {name: "cas2", seen: map[netip.Addr]int{}}}
	for _, w := range r.hosts {
		t.Cleanup(w.wg.Wait) // runs after every listener's close
	}
	for range 2 {
		ln, err := net.Listen("tcp", "10.10.2.11:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		r.hosts[0].serve(t, ln)
		ln2, err := net.Listen("tcp", fmt.Sprintf("10.10.2.12:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		r.hosts[1].serve(t, ln2)
		r.ports = append(r.ports, port)
	}
}

// dial connects from src in the clients' namespace to listener i.
func (r *transparentRig) dial(t *testing.T, src string, i int) (*net.TCPConn, *bufio.Reader, string) {
	t.Helper()
	var c *net.TCPConn
	var err error
	r.clients.Do(func() {
		c, err = lbtest.Dial(src, netip.AddrPortFrom(netip.MustParseAddr("10.10.1.1"), uint16(r.ports[i])))
	})
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("from %s: no greeting: %v", src, err)
	}
	return c, br, strings.TrimSpace(line)
}

// In transparent mode each CAS sees every client's own address, a
// client's connections to both ports reach one CAS, a payload with a
// half-close comes back whole, and the health checks still come from
// the balancer's own address.
func TestTransparentModeInNamespaces(t *testing.T) {
	r := startTransparentRig(t)
	stopCapture := r.captureOnCAS(t)
	for i := 2; i <= 9; i++ {
		src := fmt.Sprintf("10.10.1.%d", i)
		var first string
		for port := range r.ports {
			c, br, greeting := r.dial(t, src, port)
			c.Write([]byte("bind\n")) // a MAPI client always speaks
			if echo, err := br.ReadString('\n'); err != nil || echo != "bind\n" {
				t.Fatalf("from %s: echo %q, %v", src, echo, err)
			}
			c.Close()
			cas, seen, _ := strings.Cut(greeting, " ")
			if seen != src {
				t.Fatalf("%s saw the connection of client %s come from %s", cas, src, seen)
			}
			if first == "" {
				first = cas
			} else if cas != first {
				t.Fatalf("client %s reached %s on one port and %s on the other", src, first, cas)
			}
		}
	}
	c, br, _ := r.dial(t, "10.10.1.2", 0)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() { c.Write(payload); c.CloseWrite() }()
	h := sha256.New()
	if _, err := io.Copy(h, br); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("1 MiB through transparent mode with a half-close did not come back whole")
	}
	balancer := netip.MustParseAddr("10.10.2.1")
	checksSeen := func() int {
		n := 0
		for _, w := range r.hosts {
			w.mu.Lock()
			n += w.seen[balancer]
			w.mu.Unlock()
		}
		return n
	}
	lbtest.Eventually(t, 30*time.Second, "a health check from the balancer's own address 10.10.2.1", func() bool { return checksSeen() > 0 })
	checks := checksSeen()
	for _, w := range r.hosts {
		w.mu.Lock()
		for a := range w.seen {
			if a != balancer && !netip.MustParsePrefix("10.10.1.0/24").Contains(a) {
				t.Errorf("%s saw a connection from %s, neither a client nor the balancer", w.name, a)
			}
		}
		w.mu.Unlock()
	}
	if pcap := stopCapture(); pcap != "" {
		checkCASCapture(t, pcap)
	}
	if strings.Contains(r.p.logs(), "transparent mode will not work") {
		t.Errorf("start-up warned about routing that is in place:\n%s", r.p.logs())
	}
	var inLB, inClients error
	r.lb.Do(func() { inLB = proxy.CheckTransparentRoute() })
	r.clients.Do(func() { inClients = proxy.CheckTransparentRoute() })
	if inLB != nil || !errors.Is(inClients, proxy.ErrNoTransparentRoute) {
		t.Errorf("route check: %v where the route is, %v where it is not", inLB, inClients)
	}
	t.Logf("transparent mode: 8 clients seen by the CAS hosts at their own addresses, each on one CAS across 2 ports; 1 MiB echoed whole after a half-close; %d health-check connections from 10.10.2.1", checks)
}

// captureOnCAS runs tcpdump on the CAS hosts' interface, where a CAS
// engineer would, and returns what stops it and names the file ("" when
// tcpdump is not installed).
func (r *transparentRig) captureOnCAS(t *testing.T) func() string {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Log("tcpdump is not installed: the CAS-side capture is not checked (.ci/run installs it)")
		return func() string { return "" }
	}
	path := filepath.Join(t.TempDir(), "cas.pcap")
	cmd := exec.Command("ip", "netns", "exec", r.cas.Name, "tcpdump", "-i", r.casDev, "-U", "-w", path, "tcp")
	var errb lbtest.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lbtest.Eventually(t, 30*time.Second, "tcpdump listening", func() bool { return strings.Contains(errb.String(), "listening on") })
	return func() string {
		// Stop once the file (written packet by packet, -U) holds the 17
		// client connections and a health check, not after a while.
		lbtest.Eventually(t, 30*time.Second, "the clients' 17 connections and a health check in the CAS-side capture", func() bool {
			f, err := os.Open(path)
			if err != nil {
				return false
			}
			defer f.Close()
			rep, _ := capture.Analyze(f, capture.Options{}) // the last packet may be half-written
			if rep == nil || !slices.Contains(rep.Probers, "10.10.2.1") {
				return false
			}
			flows := 0
			for _, c := range rep.Clients {
				for _, v := range c.Visits {
					flows += v.Flows
				}
			}
			return flows >= 17
		})
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		return path
	}
}

// checkCASCapture runs stickylb analyze on the capture taken on the CAS
// side: every client appears with its own address on one CAS, and the
// balancer's health checks are left out of the verdicts and said so.
func checkCASCapture(t *testing.T, pcap string) {
	t.Helper()
	for _, args := range [][]string{{"analyze", "--json", pcap}, {"analyze", "--json", "--balancer", "10.10.2.1", pcap}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%v = %d: %s%s", args, code, out.String(), errb.String())
		}
		var rep struct {
			Clients []struct{ Client string }
			Split   int `json:"split_clients"`
			LeftOut int `json:"left_out_connections"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Clients) != 8 || rep.Split != 0 || rep.LeftOut == 0 {
			t.Fatalf("%v: %d clients, %d split, %d left out; want 8, 0 and the health checks:\n%s", args, len(rep.Clients), rep.Split, rep.LeftOut, out.String())
		}
		for _, c := range rep.Clients {
			if !strings.HasPrefix(c.Client, "10.10.1.") {
				t.Fatalf("the capture shows client %s, not a real client", c.Client)
			}
		}
	}
	var out, errb bytes.Buffer
	run([]string{"analyze", pcap}, &out, &errb)
	if !strings.Contains(out.String(), "left out of the verdicts") || !strings.Contains(out.String(), "10.10.2.1") {
		t.Fatalf("analyze does not say it left the balancer's checks out:\n%s", out.String())
	}
	t.Logf("CAS-side capture: %s", strings.SplitN(out.String(), "\n", 3)[:2])
}

// Transparent mode without the return route: the balancer's policy rule
// is gone, so the CAS hosts' replies to clients never reach its
// transparent sockets and every connect times out, while the checks from
// its own address pass. That is this host's routing, not the CAS: the
// clients are refused as a local error (counted, logged with the fix),
// the CAS stays up and no client moves. Before, three timeouts took a
// healthy CAS down and its clients were re-pinned: sessions split.
func TestTransparentWithoutReturnRoute(t *testing.T) {
	r := startTransparentRig(t, "connect_timeout = \"300ms\"\nconnect_retries = 1\n")
	pinned := map[string]string{}
	for i := 2; i <= 5; i++ {
		src := fmt.Sprintf("10.10.1.%d", i)
		c, _, greeting := r.dial(t, src, 0)
		c.Close()
		pinned[src], _, _ = strings.Cut(greeting, " ")
	}
	r.lb.Run("ip", "rule", "del", "lookup", "100")
	for range 3 {
		for src := range pinned {
			var c *net.TCPConn
			var err error
			r.clients.Do(func() {
				c, err = lbtest.Dial(src, netip.AddrPortFrom(netip.MustParseAddr("10.10.1.1"), uint16(r.ports[0])))
			})
			if err == nil {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if n, _ := c.Read(make([]byte, 1)); n > 0 {
					t.Fatalf("client %s was served with no return route", src)
				}
				c.Close()
			}
		}
	}
	logs := r.p.logs()
	if strings.Contains(logs, "backend down") || !strings.Contains(logs, "errno=no-return-route") {
		t.Fatalf("without the return route: a CAS was marked down, or the local error not named:\n%s", logs)
	}
	r.lb.Run("ip", "rule", "add", "iif", r.lbCasDev, "lookup", "100")
	for src, was := range pinned {
		c, _, greeting := r.dial(t, src, 0)
		c.Close()
		if cas, _, _ := strings.Cut(greeting, " "); cas != was {
			t.Fatalf("client %s moved from %s to %s while the return route was missing", src, was, cas)
		}
	}
	t.Logf("no return route: 12 connections of 4 clients refused as no-return-route, no CAS down; route back: 0 of 4 moved")
}
