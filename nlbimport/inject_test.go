package nlbimport

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/stickylb/stickylb/config"
)

// evilNode is a node name that ends the comment it is written in and
// opens a backend table of its own (finding 9 of issue 33).
const evilNode = "CAS1\n[pool.nlb1.backend.zz-evil]\naddress = \"203.0.113.66\"\n#"

// injectionExport is a two-node export whose first node has evilNode for
// a name; every other value is ordinary.
func injectionExport(t testing.TB) []byte {
	e := map[string]any{
		"Cluster": map[string]string{"Name": "cas\n[admin]", "IPAddress": "192.0.2.50"},
		"Nodes": []map[string]any{
			{"Name": evilNode, "Dips": []string{"192.0.2.11"}},
			{"Name": "CAS2", "Dips": []string{"192.0.2.12"}},
		},
	}
	var rules []map[string]string
	for _, n := range []string{evilNode, "CAS2"} {
		rules = append(rules, map[string]string{"NodeName": n, "VirtualIPAddress": "All", "StartPort": "135", "EndPort": "135",
			"Protocol": "Tcp", "FilteringMode": "Multiple", "Affinity": "Single", "EqualLoad": "True"})
	}
	e["PortRules"] = rules
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An export's text cannot add to the config: a node name with a newline
// and a table header stays inside its comment, and the file decodes to
// the two backends the export names, at their dedicated addresses. The
// file's name, written in the header, cannot either.
func TestNodeNameCannotInject(t *testing.T) {
	for _, source := range []string{"nlb.json", "nlb.json\n[global]\nx = 1"} {
		e, err := Read(injectionExport(t))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Build(e, source)
		if err != nil {
			t.Fatal(err)
		}
		importsExactly(t, res, "nlb1=192.0.2.11 nlb1=192.0.2.12")
	}
}

// importsExactly decodes res and checks its pools' backends, as
// pool=address sorted, are want and nothing else.
func importsExactly(t *testing.T, res *Result, want string) {
	t.Helper()
	cfg, err := config.Parse("imported", []byte(res.TOML))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	var got []string
	for pname, p := range cfg.Pools {
		for _, b := range p.Backends {
			got = append(got, pname+"="+b.Address)
		}
	}
	slices.Sort(got)
	if strings.Join(got, " ") != want {
		t.Fatalf("backends %v, want %s\n%s", got, want, res.TOML)
	}
}

// decodesToExport checks the property FuzzRead holds every import to:
// the written file decodes to exactly the listeners and backends the
// import meant to write, and those are what the export names (each
// backend a node at one of its dedicated addresses, each listener on a
// cluster address or a rule's, on ports of an enabled TCP rule).
func decodesToExport(t *testing.T, e *Export, res *Result, cfg *config.Config) {
	t.Helper()
	if len(cfg.Listeners) != len(res.listeners) || len(cfg.Pools) != len(res.backends) {
		t.Fatalf("%d listeners and %d pools decoded, %d and %d written\n%s", len(cfg.Listeners), len(cfg.Pools), len(res.listeners), len(res.backends), res.TOML)
	}
	for name, want := range res.listeners {
		l := cfg.Listeners[name]
		if l == nil || l.Listen != want.listen || l.Pool != want.pool {
			t.Fatalf("listener %s decodes to %+v, written %+v\n%s", name, l, want, res.TOML)
		}
		listenedAsNamed(t, e, name, want.listen)
	}
	for pname, backends := range res.backends {
		p := cfg.Pools[pname]
		if p == nil || len(p.Backends) != len(backends) {
			t.Fatalf("pool %s decodes to %+v, written %+v\n%s", pname, p, backends, res.TOML)
		}
		for bname, want := range backends {
			b := p.Backends[bname]
			if b == nil || b.Address != want.address || b.Weight != want.weight || b.Backup != want.backup {
				t.Fatalf("backend %s/%s decodes to %+v, written %+v\n%s", pname, bname, b, want, res.TOML)
			}
			i := slices.IndexFunc(e.Nodes, func(n Node) bool { return string(n.Name) == want.node })
			if i < 0 || !slices.ContainsFunc(e.Nodes[i].Dips, func(d text) bool { return sameAddr(string(d), want.address) }) {
				t.Fatalf("backend %s/%s at %s: not a node of the export at one of its dedicated addresses", pname, bname, want.address)
			}
		}
	}
}

// listenedAsNamed checks that a listener's address and ports are the
// export's: a cluster address or a rule's, each port in an enabled TCP
// rule for that address or for all of them.
func listenedAsNamed(t *testing.T, e *Export, name, listen string) {
	t.Helper()
	a, ports, err := config.ParseListenPorts(listen)
	if err != nil {
		t.Fatalf("listener %s: %v", name, err)
	}
	addrs := append([]text{e.Cluster.IPAddress}, e.Vips...)
	for _, r := range e.PortRules {
		addrs = append(addrs, r.VirtualIPAddress)
	}
	if !slices.ContainsFunc(addrs, func(v text) bool { return sameAddr(string(v), a.String()) }) {
		t.Fatalf("listener %s on %s: no cluster address or rule of the export names it", name, a)
	}
	ports.Each(func(p uint16) {
		if !slices.ContainsFunc(e.PortRules, func(r PortRule) bool { return tcpRuleTakes(r, a, int(p)) }) {
			t.Fatalf("listener %s takes %s port %d, which no enabled TCP rule of the export does", name, a, p)
		}
	})
}

func tcpRuleTakes(r PortRule, a netip.Addr, p int) bool {
	first, _ := strconv.Atoi(string(r.StartPort))
	last, _ := strconv.Atoi(string(r.EndPort))
	v := string(r.VirtualIPAddress)
	global := v == "" || strings.EqualFold(v, "All") || sameAddr(v, "255.255.255.255")
	return first <= p && p <= last && (global || sameAddr(v, a.String())) &&
		!strings.EqualFold(string(r.Protocol), "Udp") && !strings.EqualFold(string(r.PortState), "Disabled") &&
		!strings.EqualFold(string(r.FilteringMode), "Disabled")
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x.Unmap() == y.Unmap()
}

// A value an export supplies, written as a TOML value and in a comment
// after it, decodes to that value (bytes that are not UTF-8 as U+FFFD)
// and nothing else: the hostile strings below and 5,000 random ones of
// bytes and runes from every plane.
func TestShowRoundTrips(t *testing.T) {
	values := []string{evilNode, "CAS1", "", "a\"b\\c", "\x00\x7f\u0085\u2028\U000e0001", "\xff\xfe", "x\r\n[y]\nz = 1"}
	rng := rand.New(rand.NewPCG(33, 9))
	for range 5000 {
		b := make([]byte, 0, 24)
		for range rng.IntN(12) {
			if rng.IntN(3) == 0 {
				b = append(b, byte(rng.IntN(256)))
			} else {
				b = utf8.AppendRune(b, rune(rng.IntN(0x110000)))
			}
		}
		values = append(values, string(b))
	}
	for _, s := range values {
		var got map[string]any
		doc := "k = " + tomlString(s) + "   # " + show(s) + "\n"
		if _, err := toml.Decode(doc, &got); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, doc)
		}
		if want := string([]rune(s)); len(got) != 1 || got["k"] != want {
			t.Fatalf("%q decodes to %#v, want %q\n%s", s, got, want, doc)
		}
	}
}
