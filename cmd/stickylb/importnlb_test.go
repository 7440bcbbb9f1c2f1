//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
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

// Microsoft's unattend example (a global TCP 0-65535 rule beside a rule
// for port 80 of 10.100.0.223) imports as NLB ran it, where it was
// refused as an overlap: three listeners, port 80 of that address in a
// pool of its own and the rest of its ports in the global rule's.
func TestImportNLBVirtualClusters(t *testing.T) {
	var out, errb bytes.Buffer
	path := filepath.Join(t.TempDir(), "lb.toml")
	if code := run([]string{"import-nlb", "../../nlbimport/testdata/virtual-clusters.json", "-o", path}, &out, &errb); code != 0 {
		t.Fatalf("import-nlb = %d: %s", code, errb.String())
	}
	if want := "wrote " + path + ": 3 listeners, 2 pools"; !strings.Contains(errb.String(), want) {
		t.Fatalf("import-nlb's report lacks %q:\n%s", want, errb.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`listen = "10.100.0.223:1-79,81-65535"`, `listen = "10.100.0.223:80"`, `listen = "10.100.0.234:1-65535"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the imported file lacks %s:\n%s", want, b)
		}
	}
}

// The same import on loopback (the example's addresses moved to
// 127.0.0.90-93) serves as NLB did: port 80 of the virtual-cluster
// address by its own rule (Single affinity: one client, one host), port
// 81 of it and port 80 of the cluster's other address by the global rule
// (no affinity: one client's connections spread). As root only: the
// global rule's listeners take every port with sk_lookup.
func TestImportNLBVirtualClustersServe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the imported config takes ports 1-65535 of two addresses")
	}
	var out, errb bytes.Buffer
	path := filepath.Join(t.TempDir(), "lb.toml")
	if code := run([]string{"import-nlb", "../../nlbimport/testdata/virtual-clusters.json", "-o", path}, &out, &errb); code != 0 {
		t.Fatalf("import-nlb = %d: %s", code, errb.String())
	}
	b, _ := os.ReadFile(path)
	text := strings.NewReplacer("10.100.0.223", "127.0.0.90", "10.100.0.234", "127.0.0.91", "10.192.45.1", "127.0.0.92", "192.0.2.12", "127.0.0.93",
		`snapshot_file = "/var/lib/stickylb/pins.json"`, `snapshot_file = ""`, `listen = "127.0.0.1:9090"`, `listen = "off"`).Replace(string(b))
	for i, host := range []string{"127.0.0.92", "127.0.0.93"} {
		be := lbtest.NewBackend(t, fmt.Sprintf("nlb%d", i+1), host)
		for _, port := range []int{80, 81, 135} {
			if err := be.Listen(port); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := startBinary(t, nil, "run", "-c", writeConfig(t, text))
	p.addrs(3)
	for _, tc := range []struct {
		dst   string
		hosts int
	}{{"127.0.0.90:80", 1}, {"127.0.0.90:81", 2}, {"127.0.0.91:80", 2}} {
		seen := map[string]bool{}
		for range 20 {
			c, err := lbtest.Connect("127.4.0.1", netip.MustParseAddrPort(tc.dst))
			if err != nil {
				t.Fatal(err)
			}
			seen[c.Backend] = true
			c.Close()
		}
		if len(seen) != tc.hosts {
			t.Errorf("20 connections of one client to %s reached %v, want %d hosts", tc.dst, seen, tc.hosts)
		}
	}
}
