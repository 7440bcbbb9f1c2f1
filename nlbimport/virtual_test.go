package nlbimport

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/config"
)

// importFile reads, builds and decodes an export, and holds the result
// to decodesToExport.
func importFile(t *testing.T, b []byte) (*Result, *config.Config) {
	t.Helper()
	e, err := Read(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(e, "nlb.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("imported", []byte(res.TOML))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	decodesToExport(t, e, res, cfg)
	return res, cfg
}

// wantListeners checks the config's listeners, name -> "listen pool".
func wantListeners(t *testing.T, res *Result, cfg *config.Config, want map[string]string) {
	t.Helper()
	if len(cfg.Listeners) != len(want) {
		t.Fatalf("%d listeners, want %v\n%s", len(cfg.Listeners), want, res.TOML)
	}
	for name, w := range want {
		l := cfg.Listeners[name]
		if l == nil || l.Listen+" "+l.Pool != w {
			t.Fatalf("listener %s: %+v, want %s\n%s", name, l, w, res.TOML)
		}
	}
}

// Microsoft's unattend example for NLB port rules (Windows ADK,
// Microsoft-Windows-NetworkLoadBalancing-Core | Clusters | Cluster |
// Portrules): a global rule, 255.255.255.255 TCP 0-65535 multiple hosts
// with equal load and no affinity, beside a rule for 10.100.0.223, both
// protocols, port 80, load weight 100, Single affinity; the cluster's
// address is the Clusters example's 10.100.0.234, the first host's
// dedicated addresses the DedicatedIpAddresses example's, the second's a
// documentation address. NLB takes the address's own rule for its port
// and the global rule for the rest: 80 on 10.100.0.223 goes to a pool
// of its own, every other port of it and of 10.100.0.234 to the global
// rule's.
func TestVirtualClusterBesideGlobalRule(t *testing.T) {
	b, err := os.ReadFile("testdata/virtual-clusters.json")
	if err != nil {
		t.Fatal(err)
	}
	res, cfg := importFile(t, b)
	wantListeners(t, res, cfg, map[string]string{
		"tcp-1-65535-vip1": "10.100.0.234:1-65535 nlb1",
		"tcp-1-65535-vip2": "10.100.0.223:1-79,81-65535 nlb1",
		"tcp-80-vip2":      "10.100.0.223:80 nlb2",
	})
	if k1, k2 := cfg.Pools["nlb1"].Affinity.Key, cfg.Pools["nlb2"].Affinity.Key; k1.String() != "connection" || k2.String() != "src-ip" {
		t.Fatalf("affinity keys %s and %s, want connection (None) and src-ip (Single)", k1, k2)
	}
	if w := cfg.Pools["nlb2"].Backends["nlb2"].Weight; w != 100 {
		t.Fatalf("the address's rule's load weight: %d, want 100", w)
	}
	if !strings.Contains(res.TOML, "# Except port 80 on 10.100.0.223, which that address's own rule governed in NLB (BOTH 80 on 10.100.0.223).") {
		t.Fatalf("the global rule's listener on 10.100.0.223 does not say why port 80 is not its own:\n%s", res.TOML)
	}
	if d := strings.Join(res.Dropped, "\n"); !strings.Contains(d, "port rule BOTH 80 on 10.100.0.223: its UDP half") {
		t.Fatalf("the UDP half is not reported: %v", res.Dropped)
	}
}

// rule1 is one port rule as every node of a two-node cluster has it.
type rule1 struct{ vip, first, last, proto, mode, affinity string }

// twoNodes is an export of two nodes at documentation addresses with
// the cluster addresses vips and rules.
func twoNodes(t *testing.T, vips []string, rules ...rule1) []byte {
	e := Export{Cluster: Cluster{Name: "c", IPAddress: text(vips[0])},
		Nodes: []Node{{Name: "A", Dips: []text{"192.0.2.11"}}, {Name: "B", Dips: []text{"192.0.2.12"}}}}
	for _, v := range vips {
		e.Vips = append(e.Vips, text(v))
	}
	for _, r := range rules {
		for i, n := range []text{"A", "B"} {
			e.PortRules = append(e.PortRules, PortRule{NodeName: n, VirtualIPAddress: text(r.vip), StartPort: text(r.first), EndPort: text(r.last),
				Protocol: text(r.proto), FilteringMode: text(r.mode), Affinity: text(r.affinity), EqualLoad: "True", Priority: text(rune('1' + i))})
		}
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The shape: the usual global rule (all ports, both protocols,
// Single affinity) and SMTP's address with a rule of its own for 25
// (Network affinity). The SMTP address keeps every other port on the
// global rule, in several ranges; the array's address all of them.
func TestAddressRuleTakesItsPortsOnly(t *testing.T) {
	b := twoNodes(t, []string{"192.0.2.50", "192.0.2.25"},
		rule1{"All", "0", "65535", "Both", "Multiple", "Single"},
		rule1{"192.0.2.25", "25", "25", "Tcp", "Multiple", "Network"})
	res, cfg := importFile(t, b)
	wantListeners(t, res, cfg, map[string]string{
		"tcp-1-65535-vip1": "192.0.2.50:1-65535 nlb1",
		"tcp-1-65535-vip2": "192.0.2.25:1-24,26-65535 nlb1",
		"tcp-25-vip2":      "192.0.2.25:25 nlb2",
	})
	if k := cfg.Pools["nlb2"].Affinity.Key.String(); k != "src-net" {
		t.Fatalf("SMTP's pool has key %s, want src-net (Network)", k)
	}
}

// An address's rule that covers all of a global rule's ports there
// leaves the global rule no listener on that address, and says so; one
// that is disabled still takes its ports from the global rule (NLB
// blocks them on that address).
func TestAddressRuleCoversGlobalRule(t *testing.T) {
	b := twoNodes(t, []string{"192.0.2.50", "192.0.2.25"},
		rule1{"All", "25", "25", "Tcp", "Multiple", "Single"},
		rule1{"192.0.2.25", "1", "100", "Tcp", "Disabled", ""})
	res, cfg := importFile(t, b)
	wantListeners(t, res, cfg, map[string]string{"tcp-25-vip1": "192.0.2.50:25 nlb1"})
	if !strings.Contains(res.TOML, "# NLB port rule TCP 25 on every cluster address: on 192.0.2.25, that address's own rule governed all of its ports in NLB (TCP 1-100 on 192.0.2.25); no listener there.") {
		t.Fatalf("no comment for the global rule on 192.0.2.25:\n%s", res.TOML)
	}
}

// Overlaps NLB refuses stay refused, naming both rules: two global
// rules, or two rules of one address, that share a port. Rules of two
// addresses for the same port are two virtual clusters, not an overlap.
func TestOverlapsNLBRefuses(t *testing.T) {
	vips := []string{"192.0.2.50", "192.0.2.25"}
	for _, tc := range []struct {
		rules []rule1
		want  string
	}{
		{[]rule1{{"All", "0", "65535", "Tcp", "Multiple", "Single"}, {"255.255.255.255", "135", "135", "Tcp", "Multiple", "Single"}},
			"port rules TCP 0-65535 on every cluster address and TCP 135 on every cluster address overlap (port 135)"},
		{[]rule1{{"192.0.2.25", "20", "30", "Tcp", "Multiple", "Single"}, {"192.0.2.25", "25", "25", "Udp", "Multiple", "Single"}},
			"port rules TCP 20-30 on 192.0.2.25 and UDP 25 on 192.0.2.25 overlap (port 25)"},
		{[]rule1{{"192.0.2.25", "25", "25", "Tcp", "Multiple", "Single"}, {"192.0.2.50", "25", "25", "Tcp", "Single", ""}}, ""},
	} {
		e, err := Read(twoNodes(t, vips, tc.rules...))
		if err == nil {
			_, err = Build(e, "x")
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("rules %v: error %v, want %q", tc.rules, err, tc.want)
		}
	}
}
