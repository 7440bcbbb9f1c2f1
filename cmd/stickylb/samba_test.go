//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/admin"
	"github.com/stickylb/stickylb/kit/lbtest"
)

const sambaDcerpcd = "/usr/libexec/samba/samba-dcerpcd"

// sambaHost is one real DCE/RPC server: Samba's samba-dcerpcd with its
// endpoint mapper on 135 and its interfaces on ports of its own dynamic
// range, as a CAS hands out RPC Client Access and Address Book ports.
type sambaHost struct {
	name, addr string
	first      int // its dynamic port range is first to first+99
	cmd        *exec.Cmd
}

// sambaRig is a CAS array of three Samba hosts (10.20.2.11-13, each with
// its own 100-port range), stickylb on 10.20.1.1 forwarding 135 and
// 40100-40399, and a client namespace with 30 addresses (10.20.1.2-31).
type sambaRig struct {
	clients, lb, cas *lbtest.NetNS
	hosts            []*sambaHost
	p                *proc
	admin            string
	sources          []string
}

// needSamba skips the test where Samba's RPC daemon or impacket is
// missing (CI installs both: Debian's samba and python3-impacket).
func needSamba(t *testing.T) {
	if _, err := os.Stat(sambaDcerpcd); err != nil {
		t.Skipf("needs Samba's samba-dcerpcd (apt-get install samba): %v", err)
	}
	lbtest.NeedImpacket(t)
}

// allPorts forwards the endpoint mapper and every host's dynamic range.
const allPorts = "10.20.1.1:135,40100-40399"

// startSambaRig starts the rig with stickylb listening on ports (one
// listener) with the given check tables.
func startSambaRig(t *testing.T, ports, checks string) *sambaRig {
	return startSambaRigWith(t, ports, "", checks)
}

// startSambaRigWith is startSambaRig with more keys for the listener.
func startSambaRigWith(t *testing.T, ports, listenerKeys, checks string) *sambaRig {
	needSamba(t)
	r := &sambaRig{clients: lbtest.NewNetNS(t), lb: lbtest.NewNetNS(t), cas: lbtest.NewNetNS(t)}
	_, clientDev := r.lb.Link(r.clients, "10.20.1.1", "10.20.1.2")
	_, casDev := r.lb.Link(r.cas, "10.20.2.1", "10.20.2.11")
	r.sources = []string{"10.20.1.2"}
	for i := 3; i <= 31; i++ {
		src := fmt.Sprintf("10.20.1.%d", i)
		r.clients.Run("ip", "addr", "add", src+"/24", "dev", clientDev)
		r.sources = append(r.sources, src)
	}
	for i := range 3 {
		h := &sambaHost{name: fmt.Sprintf("CAS%d", i+1), addr: fmt.Sprintf("10.20.2.%d", 11+i), first: 40100 + 100*i}
		if i > 0 {
			r.cas.Run("ip", "addr", "add", h.addr+"/24", "dev", casDev)
		}
		r.hosts = append(r.hosts, h)
		r.startSamba(t, h)
	}
	var b strings.Builder
	b.WriteString("[global]\ndrain_timeout = \"2s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n")
	fmt.Fprintf(&b, "[listener.rpc]\nlisten = %q\npool = \"cas\"\n%s", ports, listenerKeys)
	b.WriteString("[pool.cas]\nconnect_timeout = \"2s\"\ndcerpc = \"calls\"\n[pool.cas.health]\ninterval = \"300ms\"\ntimeout = \"2s\"\nrise = 1\nfall = 1\n")
	b.WriteString(checks)
	for i, h := range r.hosts {
		fmt.Fprintf(&b, "[pool.cas.backend.cas%d]\naddress = %q\n", i+1, h.addr)
	}
	r.p = startBinary(t, r.lb.Prefix(), "run", "-c", writeConfig(t, b.String()))
	r.p.addrs(1)
	r.admin = "http://" + r.p.adminAddr()
	return r
}

// startSamba runs samba-dcerpcd for h with a configuration and state of
// its own, serving only h's address; it returns once port 135 answers.
func (r *sambaRig) startSamba(t *testing.T, h *sambaHost) {
	dir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, "[global]\nserver role = standalone server\nnetbios name = %s\ninterfaces = %s\nbind interfaces only = yes\n", h.name, h.addr)
	fmt.Fprintf(&conf, "rpc start on demand helpers = false\nrpc server dynamic port range = %d-%d\ndisable netbios = yes\n", h.first, h.first+99)
	for _, d := range []string{"lock directory", "state directory", "cache directory", "private dir", "pid directory", "ncalrpc dir"} {
		sub := filepath.Join(dir, strings.ReplaceAll(d, " ", "-"))
		os.MkdirAll(sub, 0o755)
		fmt.Fprintf(&conf, "%s = %s\n", d, sub)
	}
	fmt.Fprintf(&conf, "log file = %s\n", filepath.Join(dir, "log.%m"))
	cfg := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(cfg, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append(r.cas.Prefix(), sambaDcerpcd, "--libexec-rpcds", "-s", cfg, "-F", "--no-process-group", "-d0")
	h.cmd = exec.Command(argv[0], argv[1:]...)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.kill(h) })
	lbtest.Eventually(t, 20*time.Second, h.name+"'s endpoint mapper", func() bool {
		ok := false
		r.cas.Do(func() {
			if c, err := net.DialTimeout("tcp", h.addr+":135", time.Second); err == nil {
				c.Close()
				ok = true
			}
		})
		return ok
	})
}

// kill ends a Samba host and its RPC workers at once, as a crash would.
func (r *sambaRig) kill(h *sambaHost) {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	h.cmd.Wait()
	h.cmd = nil
}

// rpcReply is one client's line from testdata/rpcclient.py.
type rpcReply struct {
	Src    string `json:"src"`
	Port   int    `json:"port"`
	Server string `json:"server"`
	Error  string `json:"error"`
}

// fleet runs the impacket client from every source address once, through
// the balancer.
func (r *sambaRig) fleet(t *testing.T) map[string]rpcReply {
	t.Helper()
	argv := append(r.clients.Prefix(), "timeout", "120", "/usr/bin/python3", "testdata/rpcclient.py", "10.20.1.1")
	replies := map[string]rpcReply{}
	for _, rep := range lbtest.JSONLines[rpcReply](t, exec.Command(argv[0], append(argv[1:], r.sources...)...)) {
		replies[rep.Src] = rep
	}
	if len(replies) != len(r.sources) {
		t.Fatalf("%d replies from %d clients: %v", len(replies), len(r.sources), replies)
	}
	return replies
}

// backends reads the pool's backends from the admin API inside the
// balancer's namespace.
func (r *sambaRig) backends(t *testing.T) map[string]admin.BackendInfo {
	t.Helper()
	argv := append(r.lb.Prefix(), binary, "ctl", "--admin", r.admin, "--json", "backends")
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("ctl backends: %v", err)
	}
	var st admin.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("ctl backends: %v: %s", err, out)
	}
	m := map[string]admin.BackendInfo{}
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			m[b.Name] = b
		}
	}
	return m
}

// waitState waits until backend name is in state (up or down) and
// returns it.
func (r *sambaRig) waitState(t *testing.T, name, state string) admin.BackendInfo {
	t.Helper()
	var b admin.BackendInfo
	lbtest.Eventually(t, 20*time.Second, name+" "+state, func() bool {
		b = r.backends(t)[name]
		return b.State == state
	})
	return b
}

const srvsvcCheck = "[pool.cas.check.srvsvc]\ntype = \"rpc\"\ninterface = \"4b324fc8-1670-01d3-1278-5a47bf6ee188\"\ninterface_version = \"3.0\"\n"

// A CAS array on dynamic RPC ports works behind stickylb, shown with
// Samba's real endpoint mapper and impacket's real DCE/RPC client: each
// of 30 clients asks the endpoint mapper (135) through stickylb for
// srvsvc's port, gets its own host's dynamic port, and binds and calls
// there through the range listener; every client's call is answered by
// the host whose endpoint mapper it asked. A host killed moves only its
// own clients.
func TestSambaDynamicPorts(t *testing.T) {
	r := startSambaRig(t, allPorts, srvsvcCheck)
	for i := range r.hosts {
		r.waitState(t, fmt.Sprintf("cas%d", i+1), "up")
	}
	first := r.fleet(t)
	hostOf := map[string]string{}
	perHost := map[string]int{}
	for src, rep := range first {
		if rep.Error != "" || rep.Server == "" {
			t.Fatalf("client %s: %+v", src, rep)
		}
		h := r.hosts[(rep.Port-40100)/100]
		if h.name != rep.Server {
			t.Fatalf("client %s was given port %d (%s's range) by the endpoint mapper, and its call was answered by %s", src, rep.Port, h.name, rep.Server)
		}
		hostOf[src] = rep.Server
		perHost[rep.Server]++
	}
	t.Logf("30 clients: %v; every lookup and call of a client on one host", perHost)
	if len(perHost) < 2 {
		t.Fatalf("every client on one host: %v", perHost)
	}
	// The same clients again: each stays on its host.
	for src, rep := range r.fleet(t) {
		if rep.Error != "" || rep.Server != hostOf[src] {
			t.Fatalf("client %s moved from %s: %+v", src, hostOf[src], rep)
		}
	}
	// Kill the busiest host: its clients move, nobody else does.
	victim := r.hosts[0]
	for _, h := range r.hosts {
		if perHost[h.name] > perHost[victim.name] {
			victim = h
		}
	}
	r.kill(victim)
	down := r.waitState(t, "cas"+victim.name[3:], "down")
	t.Logf("%s killed: down with %q", victim.name, down.DownReason)
	moved := 0
	for src, rep := range r.fleet(t) {
		switch {
		case rep.Error != "":
			t.Fatalf("client %s after %s was killed: %+v", src, victim.name, rep)
		case hostOf[src] == victim.name:
			if rep.Server == victim.name {
				t.Fatalf("client %s still answered by the killed %s", src, victim.name)
			}
			moved++
		case rep.Server != hostOf[src]:
			t.Fatalf("client %s of %s moved to %s when %s died", src, hostOf[src], rep.Server, victim.name)
		}
	}
	t.Logf("after the kill: %d clients moved, all of them %s's; 0 others moved", moved, victim.name)
}

// The rpc check tells a registered interface from a missing one on the
// same real stack: with srvsvc every Samba host is up; asking for
// Exchange's EMSMDB, which Samba does not serve, every host is down with
// the reason; and a host that stops answering goes down.
func TestSambaRPCCheck(t *testing.T) {
	r := startSambaRig(t, allPorts, srvsvcCheck+"[pool.cas.check.emsmdb]\ntype = \"rpc\"\ninterface = \"emsmdb\"\n")
	for i := range r.hosts {
		b := r.waitState(t, fmt.Sprintf("cas%d", i+1), "down")
		if !strings.Contains(b.DownReason, "not registered") || !strings.Contains(b.DownReason, "a4f1db00-ca47-1067-b31f-00dd010662da v0.81") {
			t.Fatalf("cas%d down for %q, want EMSMDB not registered", i+1, b.DownReason)
		}
	}
	t.Logf("EMSMDB, not served by Samba: every host down: %q", r.backends(t)["cas1"].DownReason)
}

// With the srvsvc check alone every host is up, and a host whose RPC
// service dies goes down, named by the check.
func TestSambaRPCCheckHostDies(t *testing.T) {
	r := startSambaRig(t, allPorts, srvsvcCheck)
	for i := range r.hosts {
		r.waitState(t, fmt.Sprintf("cas%d", i+1), "up")
	}
	r.kill(r.hosts[1])
	b := r.waitState(t, "cas2", "down")
	if !strings.HasPrefix(b.DownReason, "check srvsvc: rpc: ") {
		t.Fatalf("cas2 down for %q", b.DownReason)
	}
	if got := r.backends(t); got["cas1"].State != "up" || got["cas3"].State != "up" {
		t.Fatalf("the others: %+v", got)
	}
}

// The failure the range listener cures, on the same real stack: a
// balancer that forwards the endpoint mapper alone (a fixed port, as
// stickylb did), with a check of 135 that keeps every host up, answers
// every lookup and refuses every call on the dynamic port it hands out.
func TestSambaEndpointMapperOnlyFails(t *testing.T) {
	r := startSambaRig(t, "10.20.1.1:135", "[pool.cas.check.epmap]\ntype = \"tcp\"\nport = 135\n")
	failed := 0
	for src, rep := range r.fleet(t) {
		if rep.Port == 0 || rep.Error == "" {
			t.Fatalf("client %s: %+v; want a port from the lookup and a failed call", src, rep)
		}
		failed++
	}
	t.Logf("135 forwarded alone: %d of %d clients got a port and could not call on it", failed, len(r.sources))
}

// The rpc check compares the port the endpoint mapper hands out with what
// the pool forwards: forwarding only cas1's range (as with a static port
// set on one server and lost on the others), cas1 is up and cas2 and cas3
// are down, named as unreachable ports.
func TestSambaRPCCheckPortNotForwarded(t *testing.T) {
	r := startSambaRig(t, "10.20.1.1:135,40100-40199", srvsvcCheck)
	r.waitState(t, "cas1", "up")
	for _, name := range []string{"cas2", "cas3"} {
		b := r.waitState(t, name, "down")
		if !strings.Contains(b.DownReason, "which this pool does not forward") {
			t.Fatalf("%s down for %q", name, b.DownReason)
		}
	}
	t.Logf("cas2: %s", r.backends(t)["cas2"].DownReason)
}
