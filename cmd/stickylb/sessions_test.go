//go:build linux

package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// ctl sessions against the real binary answers what the Cisco note asks
// of a packet capture: a client's connections with the port, the CAS
// and the interface bound (EMSMDB, NSPI), and a split once ctl maint
// moved the client's pin while its EMSMDB connection stayed on the old
// CAS. The JSON says the same.
func TestCtlSessionsShowsInterfacesAndSplit(t *testing.T) {
	port := lbtest.StartRPCs(t, []string{"127.0.0.11", "127.0.0.12"}, func(i int) lbtest.RPCServer {
		return lbtest.RPCServer{Name: fmt.Sprintf("cas%d", i+1)}
	})
	path := writeConfig(t, "[global]\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"+
		fmt.Sprintf("[listener.l0]\nlisten = \"127.0.0.1:0\"\npool = \"cas\"\nbackend_port = %d\n", port)+
		"[pool.cas]\ndcerpc = \"binds\"\n[pool.cas.health]\nenabled = false\n"+
		"[pool.cas.backend.cas1]\naddress = \"127.0.0.11\"\n[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n")
	p := startBinary(t, nil, "run", "-c", path)
	addr := p.addrs(1)["l0"]
	ctl := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := run(append([]string{"ctl", "--admin", "http://" + p.adminAddr()}, args...), &out, &errb)
		return out.String() + errb.String(), code
	}
	bindFrom := func(iface dcerpc.Syntax) string {
		c, err := lbtest.DialRPC("127.43.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Bind(iface, false); err != nil {
			t.Fatal(err)
		}
		who, err := c.Call(1)
		if err != nil {
			t.Fatal(err)
		}
		return string(who)
	}
	first := bindFrom(dcerpc.EMSMDB)
	out, code := ctl("sessions", "127.43.0.1")
	if code != 0 || !strings.Contains(out, "pinned to "+first+": not split") ||
		!strings.Contains(out, "EMSMDB a4f1db00-ca47-1067-b31f-00dd010662da v0.81") || !strings.Contains(out, "accepted") ||
		!strings.Contains(out, fmt.Sprintf("  %d  ", addr.Port())) {
		t.Fatalf("ctl sessions: %d\n%s", code, out)
	}
	if out, code := ctl("maint", first); code != 0 {
		t.Fatalf("ctl maint: %d %s", code, out)
	}
	second := bindFrom(dcerpc.NSPI)
	out, code = ctl("sessions")
	if code != 0 || !strings.Contains(out, "pinned to "+second+": SPLIT (connections on cas1 and cas2") ||
		!strings.Contains(out, first+" (not its pin)") || !strings.Contains(out, "NSPI f5cc5a18-4264-101a-8c59-08002b2f8426 v56.0") ||
		!strings.Contains(out, "1 client split across CAS, the split behind MAPI_E_NETWORK_ERROR") {
		t.Fatalf("ctl sessions after the move: %d\n%s", code, out)
	}
	if out, code := ctl("--json", "sessions"); code != 0 || !strings.Contains(out, `"split": 1`) && !strings.Contains(out, `"split":1`) {
		t.Fatalf("ctl --json sessions: %d %s", code, out)
	}
	if out, code := ctl("sessions", "127.43.0.9"); code != 0 || out != "no open connections match\n" {
		t.Fatalf("ctl sessions of a client with none: %d %q", code, out)
	}
	if _, code := ctl("sessions", "a", "b"); code != 2 {
		t.Fatalf("ctl sessions with two arguments exited %d", code)
	}
}
