package nlbimport

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/stickylb/stickylb/config"
)

// fixture is an Exchange CAS array as the export script writes it (built
// from Microsoft's documented property names, not from a real cluster):
// three hosts with unequal load weights, 135 and the dynamic RPC range
// with Single affinity, a disabled 443 rule for both protocols, and SMTP
// in single-host mode.
func fixture(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/cas-array.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The export becomes a config that check accepts: one pool for the MAPI
// rules (one affinity table, as NLB's hash kept a client on one host
// across them) with the load weights, the range as a range listener, the
// disabled rule left out and said so, the single-host rule as a primary
// and backups.
func TestCASArrayExport(t *testing.T) {
	e, err := Read(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(e, "cas-array.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("imported", []byte(res.TOML))
	if err != nil {
		t.Fatalf("%v\n%s", err, res.TOML)
	}
	want := map[string]string{"tcp-135": "10.0.0.50:135", "tcp-6005-59530": "10.0.0.50:6005-59530", "tcp-25": "10.0.0.50:25"}
	if len(cfg.Listeners) != len(want) {
		t.Fatalf("listeners %v, want %v", cfg.Listeners, want)
	}
	for name, listen := range want {
		if l := cfg.Listeners[name]; l == nil || l.Listen != listen {
			t.Fatalf("listener %s: %+v, want %s", name, l, listen)
		}
	}
	if a, b := cfg.Listeners["tcp-135"].Pool, cfg.Listeners["tcp-6005-59530"].Pool; a != b {
		t.Fatalf("135 in pool %s and the RPC range in %s: their clients would split", a, b)
	}
	mapi := cfg.Pools[cfg.Listeners["tcp-135"].Pool]
	for name, w := range map[string]int{"cas1": 50, "cas2": 30, "cas3": 20} {
		if b := mapi.Backends[name]; b == nil || b.Weight != w || b.Backup {
			t.Fatalf("MAPI backend %s: %+v, want weight %d", name, b, w)
		}
	}
	if mapi.Backends["cas2"].Address != "10.0.0.12" {
		t.Fatalf("cas2 at %s: the IPv4 dedicated address is the one to reach", mapi.Backends["cas2"].Address)
	}
	smtp := cfg.Pools[cfg.Listeners["tcp-25"].Pool]
	if smtp.Backends["cas1"].Backup || !smtp.Backends["cas2"].Backup || !smtp.Backends["cas3"].Backup {
		t.Fatalf("single-host rule: primary and backups wrong: %+v %+v %+v", smtp.Backends["cas1"], smtp.Backends["cas2"], smtp.Backends["cas3"])
	}
	if !strings.Contains(strings.Join(res.Dropped, "\n"), "BOTH 443 on every cluster address: disabled in NLB") {
		t.Fatalf("the disabled rule is not reported: %v", res.Dropped)
	}
	if !strings.Contains(res.TOML, "# NLB port rule BOTH 443 on every cluster address: disabled in NLB, left out.") {
		t.Fatal("the disabled rule has no comment in the file")
	}
}

// Windows PowerShell 5.1's > writes UTF-16 with a byte order mark; the
// same export read that way gives the same config.
func TestUTF16Export(t *testing.T) {
	src := bytes.TrimPrefix(fixture(t), []byte{0xef, 0xbb, 0xbf})
	u := utf16.Encode([]rune(string(src)))
	b := []byte{0xff, 0xfe}
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	e1, err1 := Read(b)
	e2, err2 := Read(fixture(t))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	r1, _ := Build(e1, "x")
	r2, _ := Build(e2, "x")
	if r1.TOML != r2.TOML {
		t.Fatal("UTF-16 and UTF-8 exports give different configs")
	}
}

// Malformed or partial input gets an error naming what is missing.
func TestBadExports(t *testing.T) {
	good := string(bytes.TrimPrefix(fixture(t), []byte{0xef, 0xbb, 0xbf}))
	for _, tc := range []struct{ in, want string }{
		{"{", "not JSON"},
		{"[]", "not an NLB export"},
		{`{"Cluster":{"Name":"x"},"Nodes":[],"PortRules":[]}`, "no cluster IP address"},
		{`{"Cluster":{"Name":"x","IPAddress":"10.0.0.50"},"Nodes":[{"Name":"A"}],"PortRules":[]}`, "node A has no dedicated IP address"},
		{`{"Cluster":{"Name":"x","IPAddress":"10.0.0.50"},"Nodes":[{"Name":"A","Dips":["10.0.0.1"]}]}`, "no port rules"},
		{strings.Replace(good, `"Affinity": "Single"`, `"Affinity": 1`, 1), "Affinity is the number 1"},
		{strings.Replace(good, `"StartPort": "135"`, `"StartPort": "x"`, 1), `ports "x"-"135"`},
		{strings.Replace(good, `"Dips"`, `"DedicatedIPs"`, 1), `unknown field "DedicatedIPs"`},
	} {
		e, err := Read([]byte(tc.in))
		if err == nil {
			_, err = Build(e, "x")
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("input %.60q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzRead: whatever the file holds, Read and Build return an error or a
// config; a config they return passes check and decodes to exactly the
// backends and listeners the export names (decodesToExport).
func FuzzRead(f *testing.F) {
	f.Add(fixture(f))
	f.Add(injectionExport(f))
	vc, err := os.ReadFile("testdata/virtual-clusters.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(vc)
	f.Add([]byte(`{"Cluster":{"IPAddress":"10.0.0.50"},"Nodes":[{"Name":"A","Dips":["10.0.0.1"]}],"PortRules":[{"NodeName":"A","StartPort":"0","EndPort":"65535","Protocol":"Both","FilteringMode":"Multiple","Affinity":"Network"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Read(b)
		if err != nil {
			return
		}
		res, err := Build(e, "fuzz")
		if err != nil {
			return
		}
		cfg, err := config.Parse("fuzz", []byte(res.TOML))
		if err != nil {
			t.Fatalf("an import that does not pass check: %v\n%s", err, res.TOML)
		}
		decodesToExport(t, e, res, cfg)
	})
}
