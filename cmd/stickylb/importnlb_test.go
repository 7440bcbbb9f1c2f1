//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/sim"
)

// A realistic Exchange CAS array NLB export (three hosts, 135 and the
// dynamic RPC range with Single affinity, unequal weights, a disabled
// rule, SMTP in single-host mode) becomes an lb.toml that check accepts;
// pointed at simulated CAS hosts that take their RPC ports from the
// dynamic range, each its own, it serves the simulated Unity fleet with
// no MAPI_E_NETWORK_ERROR. As root only: it listens on 135 and takes the
// whole range with sk_lookup.
func TestImportNLBServesTheFleet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the imported config listens on port 135 and 6005-59530")
	}
	var out, errb bytes.Buffer
	path := filepath.Join(t.TempDir(), "lb.toml")
	if code := run([]string{"import-nlb", "../../nlbimport/testdata/cas-array.json", "-o", path}, &out, &errb); code != 0 {
		t.Fatalf("import-nlb = %d: %s", code, errb.String())
	}
	for _, want := range []string{"not carried over: port rule BOTH 443 on every cluster address: disabled in NLB, left out",
		"to decide: health checks", "wrote " + path + ": 3 listeners, 2 pools"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("import-nlb's report lacks %q:\n%s", want, errb.String())
		}
	}
	if code := run([]string{"check", "-c", path}, &out, &errb); code != 0 {
		t.Fatalf("check of the imported file = %d: %s", code, errb.String())
	}
	// The same file with the lab's addresses: the array's address on
	// loopback, each NLB host's dedicated address a simulated CAS.
	b, _ := os.ReadFile(path)
	text := strings.NewReplacer("10.0.0.50", "127.0.0.80", "10.0.0.11", "127.0.0.81", "10.0.0.12", "127.0.0.82", "10.0.0.13", "127.0.0.83",
		`snapshot_file = "/var/lib/stickylb/pins.json"`, `snapshot_file = ""`, `listen = "127.0.0.1:9090"`, `listen = "off"`).Replace(string(b))
	for i := range 3 {
		c, err := sim.StartCAS(sim.CASConfig{Name: fmt.Sprintf("cas%d", i+1), Host: fmt.Sprintf("127.0.0.8%d", i+1), EPMPort: 135,
			DynamicFirst: 6005, DynamicLast: 59530})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
	}
	p := startBinary(t, nil, "run", "-c", writeConfig(t, text))
	p.addrs(3)
	var srcs []string
	for i := range 12 {
		srcs = append(srcs, fmt.Sprintf("127.3.0.%d", i+1))
	}
	rep := sim.NewFleet(sim.FleetConfig{Target: "127.0.0.80", EPMPort: 135, Sources: srcs, Sessions: 12, Duration: 2 * time.Second}).Run(context.Background())
	t.Logf("imported config, fleet on dynamic ports: %d operations, %d MAPI_E_NETWORK_ERROR, %d connection errors, sessions per CAS %v",
		rep.Ops, rep.MAPINetworkErrors, rep.ConnErrors, rep.SessionsPerCAS)
	if rep.MAPINetworkErrors != 0 || rep.ConnErrors != 0 || rep.Ops < 100 {
		t.Fatalf("%+v", rep.Errors)
	}
}
