//go:build linux

package sim

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

// rpcclient is the impacket client fleet the Samba tests run too.
const rpcclient = "../../cmd/stickylb/testdata/rpcclient.py"

// impacketReply is one line of rpcclient.py.
type impacketReply struct {
	Src, Iface, Error string
	Port              int
	Bound             bool
}

// impacket runs rpcclient.py from src against the endpoint mapper at
// host:epm for each interface ("UUID VERSION") and returns its lines by
// interface.
func impacket(t *testing.T, host string, epm int, src string, ifaces ...string) map[string]impacketReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{rpcclient, "--epm-port", strconv.Itoa(epm)}
	for _, i := range ifaces {
		args = append(args, append([]string{"--iface"}, strings.Fields(i)...)...)
	}
	got := map[string]impacketReply{}
	for _, r := range lbtest.JSONLines[impacketReply](t, exec.CommandContext(ctx, "/usr/bin/python3", append(args, host, src)...)) {
		got[r.Iface] = r
	}
	if len(got) != len(ifaces) {
		t.Fatalf("rpcclient.py answered %d interfaces of %d: %v", len(got), len(ifaces), got)
	}
	return got
}

// A real DCE/RPC client, impacket, queries the simulated endpoint
// mapper of a CAS on dynamic ports: its ept_map (epm.hept_map) of
// EMSMDB v0.81 and NSPI v56.0 is answered with the ports the CAS took
// from its range for RPC Client Access and the Address Book, and
// impacket's bind of each interface on its port is accepted. ept_map of
// an interface the CAS does not serve (srvsvc, or EMSMDB newer than
// v0.81) reaches impacket as ept_s_not_registered. Nothing the client
// sent is a protocol error or a rejected bind.
func TestImpacketQueriesEndpointMapper(t *testing.T) {
	lbtest.NeedImpacket(t)
	const host = "127.0.0.47"
	epm := freePorts(t, host)[0]
	cas, err := StartCAS(CASConfig{Name: "cas1", Host: host, EPMPort: epm, DynamicFirst: 47000, DynamicLast: 47999})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cas.Close)
	rca, ab := cas.Ports()
	const (
		emsmdb    = "a4f1db00-ca47-1067-b31f-00dd010662da 0.81"
		nspi      = "f5cc5a18-4264-101a-8c59-08002b2f8426 56.0"
		srvsvc    = "4b324fc8-1670-01d3-1278-5a47bf6ee188 3.0"
		emsmdb082 = "a4f1db00-ca47-1067-b31f-00dd010662da 0.82"
	)
	got := impacket(t, host, epm, "127.0.0.1", emsmdb, nspi, srvsvc, emsmdb082)
	for _, w := range []struct {
		iface string
		port  int
	}{{emsmdb, rca}, {nspi, ab}} {
		r := got[strings.Replace(w.iface, " ", " v", 1)]
		if r.Error != "" || r.Port != w.port || !r.Bound {
			t.Fatalf("impacket's ept_map and bind of %s: %+v; want port %d and the bind accepted", w.iface, r, w.port)
		}
		t.Logf("impacket: %s at port %d, bound", r.Iface, r.Port)
	}
	for _, iface := range []string{srvsvc, emsmdb082} {
		if r := got[strings.Replace(iface, " ", " v", 1)]; r.Port != 0 || !strings.Contains(r.Error, "ept_s_not_registered") {
			t.Fatalf("impacket's ept_map of %s, which the CAS does not serve: %+v; want ept_s_not_registered", iface, r)
		}
	}
	if st := cas.Stats(); st.Lookups != 4 || st.ProtocolErrors != 0 || st.RejectedBinds != 0 {
		t.Fatalf("the CAS counted %d lookups, %d protocol errors, %d rejected binds; want 4, 0, 0", st.Lookups, st.ProtocolErrors, st.RejectedBinds)
	}
}
