//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// Following the endpoint mapper on the real stack: stickylb forwards 135
// alone, with inspect_dcerpc, and no range. Every impacket client's
// ept_map goes to its pinned Samba host, and its bind and call on the
// port returned, at the balancer's address, reach that same host: each
// client on one host. A port that host handed to one client refuses a
// client of another host, and a port no host handed out is refused. A
// host killed moves only its clients: a port it handed out is refused
// (not sent to another host), and its clients, asking 135 again, get a
// port of another host and work there.
func TestSambaFollowsEndpointMapper(t *testing.T) {
	r := startSambaRigWith(t, "10.20.1.1:135", "inspect_dcerpc = true\n", srvsvcCheck)
	for i := range r.hosts {
		r.waitState(t, fmt.Sprintf("cas%d", i+1), "up")
	}
	handed := map[int]bool{}
	hostOf := map[string]string{}
	byHost := map[string]rpcReply{} // one client of each host
	perHost := map[string]int{}
	for src, rep := range r.fleet(t) {
		if rep.Error != "" || rep.Server == "" {
			t.Fatalf("client %s: %+v", src, rep)
		}
		if h := r.hosts[(rep.Port-40100)/100]; h.name != rep.Server {
			t.Fatalf("client %s was handed port %d (%s's) and answered by %s", src, rep.Port, h.name, rep.Server)
		}
		handed[rep.Port] = true
		hostOf[src] = rep.Server
		byHost[rep.Server] = rep
		perHost[rep.Server]++
	}
	t.Logf("135 alone, following: 30 clients, each on one host: %v, ports handed out %v", perHost, handed)
	if len(byHost) < 2 {
		t.Fatalf("every client on one host: %v", perHost)
	}
	var a, b rpcReply
	for _, rep := range byHost {
		if a.Src == "" {
			a = rep
		} else if b.Src == "" {
			b = rep
		}
	}
	// b's client dials the port a's host handed to a's client.
	if err := r.bindVia(b.Src, a.Port); err == nil {
		t.Fatalf("client %s (of %s) bound on port %d, which %s handed to %s only", b.Src, b.Server, a.Port, a.Server, a.Src)
	} else {
		t.Logf("client %s on %s's port %d: %v", b.Src, a.Server, a.Port, err)
	}
	unhanded := 40199
	for handed[unhanded] {
		unhanded--
	}
	if err := r.bindVia(a.Src, unhanded); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("port %d, handed to no one: %v, want connection refused", unhanded, err)
	}
	m := r.metrics(t)
	for _, want := range []string{`stickylb_connections_refused_total{listener="rpc-pinhole",reason="no-pinhole"} 1`,
		`stickylb_pinholes_learned_total{listener="rpc"} 30`, `stickylb_pinhole_clients{listener="rpc"} 30`,
		fmt.Sprintf(`stickylb_pinhole_ports{listener="rpc"} %d`, len(handed)), `stickylb_pinhole_unparsed_bytes_total{listener="rpc"} 0`,
		`stickylb_pinholes_open_failed_total{listener="rpc"} 0`} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s:\n%s", want, grepLines(m, "pinhole"))
		}
	}
	t.Logf("metrics:\n%s", grepLines(m, `pinhole`))
	r.faultCounted(t, a)
	r.killFollowed(t, a, hostOf)
}

// faultCounted calls an operation srvsvc does not have, from a's client
// on the port its host handed it: Samba answers with a fault, which
// stickylb counts on that host, and while the connection is open the
// sessions API shows the interface it bound on that host.
func (r *sambaRig) faultCounted(t *testing.T, a rpcReply) {
	backend := "cas" + a.Server[3:]
	status, stop, err := r.faultVia(a.Src, a.Port)
	if err != nil {
		t.Fatalf("a call srvsvc lacks, from %s: %v", a.Src, err)
	}
	sessions := r.get(t, "/api/sessions?client="+a.Src)
	stop()
	if !strings.Contains(sessions, "4b324fc8-1670-01d3-1278-5a47bf6ee188") || !strings.Contains(sessions, `"`+backend+`"`) {
		t.Fatalf("the sessions API does not show %s's srvsvc bind on %s:\n%s", a.Src, backend, sessions)
	}
	want := fmt.Sprintf(`stickylb_rpc_faults_total{backend=%q,pool="cas",status="0x%08x"} 1`, backend, status)
	if m := r.metrics(t); !strings.Contains(m, want) {
		t.Fatalf("Samba's fault 0x%08x on %s is not counted there; want %s in:\n%s", status, backend, want, grepLines(m, "rpc_faults"))
	}
	t.Logf("Samba answered opnum 999 with fault 0x%08x, counted on %s", status, backend)
}

// faultVia binds srvsvc from src at the balancer's port and calls an
// operation it does not have; it returns the fault's status and what
// closes the connection.
func (r *sambaRig) faultVia(src string, port int) (uint32, func(), error) {
	srvsvc, _ := dcerpc.ParseUUID("4b324fc8-1670-01d3-1278-5a47bf6ee188")
	var (
		c      *net.TCPConn
		status uint32
		err    error
	)
	r.clients.Do(func() {
		if c, err = lbtest.Dial(src, netip.AddrPortFrom(netip.MustParseAddr("10.20.1.1"), uint16(port))); err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err = c.Write(dcerpc.Bind(1, dcerpc.Syntax{UUID: srvsvc, Major: 3})); err != nil {
			return
		}
		if _, err = dcerpc.ReadPDU(c, nil); err != nil {
			return
		}
		if _, err = c.Write(dcerpc.Request(2, 999, nil)); err != nil {
			return
		}
		var f dcerpc.Fault
		if _, _, err = dcerpc.ReadResponse(c, 2); !errors.As(err, &f) {
			err = fmt.Errorf("opnum 999 answered without a fault: %v", err)
			return
		}
		status, err = uint32(f), nil
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return 0, nil, err
	}
	return status, func() { c.Close() }, nil
}

// killFollowed kills the host that answered client a, checks that a's
// learned port is refused, and that a fleet run moves a's host's clients
// only.
func (r *sambaRig) killFollowed(t *testing.T, a rpcReply, hostOf map[string]string) {
	var victim *sambaHost
	for _, h := range r.hosts {
		if h.name == a.Server {
			victim = h
		}
	}
	r.kill(victim)
	r.waitState(t, "cas"+victim.name[3:], "down")
	if err := r.bindVia(a.Src, a.Port); err == nil {
		t.Fatalf("client %s bound on port %d of the killed %s", a.Src, a.Port, victim.name)
	}
	moved := 0
	for src, rep := range r.fleet(t) {
		switch {
		case rep.Error != "":
			t.Fatalf("client %s after %s was killed: %+v", src, victim.name, rep)
		case hostOf[src] == victim.name:
			if rep.Server == victim.name || r.hosts[(rep.Port-40100)/100].name != rep.Server {
				t.Fatalf("client %s of the killed %s: %+v", src, victim.name, rep)
			}
			moved++
		case rep.Server != hostOf[src]:
			t.Fatalf("client %s of %s moved to %s when %s died", src, hostOf[src], rep.Server, victim.name)
		}
	}
	if m := r.metrics(t); !strings.Contains(m, `stickylb_connections_refused_total{listener="rpc-pinhole",reason="pinhole-backend-down"} 1`) {
		t.Fatalf("the killed host's port was not refused as pinhole-backend-down:\n%s", grepLines(m, "refused"))
	}
	t.Logf("%s killed: its port refused; %d clients moved, all of them its own, each on one host again", victim.name, moved)
}

// bindVia binds srvsvc from src at the balancer's port, in the clients'
// namespace, and says whether a bind_ack came back.
func (r *sambaRig) bindVia(src string, port int) error {
	srvsvc, _ := dcerpc.ParseUUID("4b324fc8-1670-01d3-1278-5a47bf6ee188")
	var err error
	r.clients.Do(func() {
		var c *net.TCPConn
		if c, err = lbtest.Dial(src, netip.AddrPortFrom(netip.MustParseAddr("10.20.1.1"), uint16(port))); err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err = c.Write(dcerpc.Bind(1, dcerpc.Syntax{UUID: srvsvc, Major: 3})); err != nil {
			return
		}
		var p dcerpc.PDU
		if p, err = dcerpc.ReadPDU(c, nil); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("closed without an answer: %w", err)
			}
			return
		}
		if res, perr := dcerpc.ParseBindReply(p); perr != nil || !res.Accepted {
			err = fmt.Errorf("bind answered %v, %v", res, perr)
		}
	})
	return err
}

// metrics scrapes the balancer's /metrics from inside its namespace.
func (r *sambaRig) metrics(t *testing.T) string {
	t.Helper()
	return r.get(t, "/metrics")
}

// get fetches an admin API path from inside the balancer's namespace.
func (r *sambaRig) get(t *testing.T, path string) string {
	t.Helper()
	argv := append(r.lb.Prefix(), "curl", "-sf", r.admin+path)
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("GET %s%s: %v", r.admin, path, err)
	}
	return string(out)
}

// grepLines returns the lines of s that contain sub, less comments,
// histogram buckets and zeros.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") && !strings.Contains(l, "_bucket") && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
