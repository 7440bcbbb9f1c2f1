package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const minimal = `
[listener.epmap]
listen = "127.0.0.1:10135"
pool = "cas"

[pool.cas.backend.cas1]
address = "127.0.0.11"
`

// The example lb.toml the repository ships loads as it is, with its three
// listeners on one pool of three backends.
func TestExampleConfigLoads(t *testing.T) {
	c, err := Load("../lb.toml")
	if err != nil {
		t.Fatalf("the example lb.toml does not load: %v", err)
	}
	if len(c.Listeners) != 3 || len(c.Pools["cas"].Backends) != 3 {
		t.Fatalf("lb.toml: %d listeners, %d backends; want 3 and 3", len(c.Listeners), len(c.Pools["cas"].Backends))
	}
	for _, l := range c.Listeners {
		if l.Pool != "cas" {
			t.Errorf("listener %s uses pool %s; all three must share cas", l.Name, l.Pool)
		}
	}
}

// A minimal file gets every documented default.
func TestDefaults(t *testing.T) {
	c, err := Parse("min.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Pools["cas"]
	checks := []struct {
		name      string
		got, want any
	}{
		{"balance", p.Balance, Hash},
		{"on_down", p.OnDown, Repin},
		{"connect_timeout", p.ConnectTimeout.Duration, 5 * time.Second},
		{"connect_retries", p.ConnectRetries, 2},
		{"idle_timeout", p.IdleTimeout.Duration, time.Duration(0)},
		{"dcerpc", p.DCERPC, RPCOff},
		{"key", p.Affinity.Key, SrcIP},
		{"ttl", p.Affinity.TTL.Duration, 3 * time.Hour},
		{"max_entries", p.Affinity.MaxEntries, 1_000_000},
		{"new_pins_per_second", p.Affinity.NewPinsPerSecond, 1000.0},
		{"max_conns_per_client", p.Limits.MaxConnsPerClient, 30_000},
		{"limits.ipv6_prefix", p.Limits.IPv6Prefix, 64},
		{"health.enabled", p.Health.Enabled, true},
		{"rise", p.Health.Rise, 2},
		{"fall", p.Health.Fall, 3},
		{"weight", p.Backends["cas1"].Weight, 1},
		{"drain_timeout", c.Global.DrainTimeout.Duration, 30 * time.Second},
		{"log_format", c.Global.LogFormat, TextLog},
		{"log_level", c.Global.LogLevel, LevelInfo},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("default %s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if p.Affinity.TTL.Duration <= 2*time.Hour {
		t.Errorf("default ttl %s must exceed Windows' 2h keepalive", p.Affinity.TTL)
	}
	// Explicit zeroes are kept, not replaced by defaults.
	c, err = Parse("z.toml", []byte(minimal+"[pool.cas]\nconnect_retries = 0\n[pool.cas.backend.cas2]\naddress=\"127.0.0.12\"\nweight = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Pools["cas"].ConnectRetries != 0 || c.Pools["cas"].Backends["cas2"].Weight != 0 {
		t.Errorf("explicit zeroes were overwritten by defaults")
	}
}

// Every kind of mistake is reported as file:line: key: text, with a
// suggestion for a misspelt key.
func TestErrorsNameFileLineAndKey(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // each must appear in one error, as file:line: key: text
	}{
		{"unknown key", minimal + "[pool.cas.affinity]\nttl = \"1h\"\nkee = \"src-ip\"\n",
			[]string{"f.toml:10: pool.cas.affinity.kee: unknown key; did you mean key?"}},
		{"typo", minimal + "[pool.cas]\nconnect_timout = \"1s\"\n",
			[]string{"f.toml:9: pool.cas.connect_timout: unknown key; did you mean connect_timeout?"}},
		{"nothing near", minimal + "[pool.cas]\nfrobnicate = 1\n",
			[]string{"f.toml:9: pool.cas.frobnicate: unknown key; see docs/config.md"}},
		{"unknown table", minimal + "[pool.cas.helth]\ninterval = \"1s\"\n",
			[]string{"f.toml:9: pool.cas.helth.interval: unknown key"}},
		{"wrong type", minimal + "[pool.cas]\nconnect_retries = \"two\"\n",
			[]string{"f.toml:9: pool.cas.connect_retries: incompatible types"}},
		{"bad duration", minimal + "[pool.cas]\nconnect_timeout = \"5 seconds\"\n",
			[]string{"f.toml:9: pool.cas.connect_timeout: bad duration \"5 seconds\""}},
		{"missing pool", "[listener.a]\nlisten = \"127.0.0.1:1\"\npool = \"nope\"\n[pool.cas.backend.b]\naddress = \"1.1.1.1\"\n",
			[]string{"f.toml:3: listener.a.pool: pool \"nope\" is not defined (defined: cas)"}},
		{"duplicate name", minimal + "[pool.cas.backend.cas1]\naddress = \"127.0.0.12\"\n",
			[]string{"f.toml:8:", "cas1"}},
		{"duplicate listen", minimal + "[listener.again]\nlisten = \"127.0.0.1:10135\"\npool = \"cas\"\n",
			[]string{"f.toml:3: listener.epmap.listen: 127.0.0.1:10135 is also the address of listener \"again\""}},
		{"backend with port", "[listener.a]\nlisten = \"127.0.0.1:1\"\npool = \"cas\"\n[pool.cas.backend.b]\naddress = \"1.1.1.1:135\"\n",
			[]string{"f.toml:5: pool.cas.backend.b.address: \"1.1.1.1:135\" has a port"}},
		{"bad enum", minimal + "[pool.cas]\nbalance = \"sticky\"\non_down = \"wait\"\n",
			[]string{"f.toml:9: pool.cas.balance: must be one of hash", "f.toml:10: pool.cas.on_down: must be one of repin, reject"}},
		{"bad dcerpc depth", minimal + "[pool.cas]\ndcerpc = \"headers\"\n",
			[]string{"f.toml:9: pool.cas.dcerpc: must be one of off, binds, calls, not \"headers\""}},
		{"bad listen", "[listener.a]\nlisten = \"localhost\"\npool = \"cas\"\n[pool.cas.backend.b]\naddress = \"1.1.1.1\"\n",
			[]string{"f.toml:2: listener.a.listen: \"localhost\" is not host:port"}},
		{"no backends", "[listener.a]\nlisten = \"127.0.0.1:1\"\npool = \"cas\"\n[pool.cas]\nbalance = \"hash\"\n",
			[]string{"f.toml:4: pool.cas.backend: no backend"}},
		{"syntax", "[listener.a\n", []string{"f.toml:2: expected '.' or ']'"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(c.src))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.src)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
				}
			}
		})
	}
}

// Four mistakes in one file are reported together, not one per run.
func TestAllMistakesReportedTogether(t *testing.T) {
	src := "[listener.a]\nlisten = \"127.0.0.1:1\"\npool = \"x\"\n[pool.cas]\nbalance = \"b\"\n[pool.cas.backend.b]\naddress = \"\"\nweight = 5000\n"
	_, err := Parse("f.toml", []byte(src))
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 4 {
		t.Fatalf("want 4 errors reported at once, got %v", err)
	}
}

// A value of the wrong type, a bad word or a bad duration does not hide
// the mistakes after it, in the same table or another.
func TestTypeErrorsHideNothing(t *testing.T) {
	src := minimal + "[pool.cas]\nconnect_retries = \"two\"\nconnect_timeout = \"5 seconds\"\nbalance = \"sticky\"\n" +
		"passive_fall = -1\n[pool.cas.affinity]\nttl = 5\nkee = 1\n[global]\nlog_level = \"loud\"\n"
	_, err := Parse("f.toml", []byte(src))
	want := []string{
		"f.toml:9: pool.cas.connect_retries: incompatible types",
		"f.toml:10: pool.cas.connect_timeout: bad duration",
		"f.toml:11: pool.cas.balance: must be one of hash, least-conn, round-robin, not \"sticky\"",
		"f.toml:12: pool.cas.passive_fall: must be from 0",
		"f.toml:14: pool.cas.affinity.ttl: bad duration \"5\"",
		"f.toml:15: pool.cas.affinity.kee: unknown key",
		"f.toml:17: global.log_level: must be one of info, debug, warn, error",
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != len(want) {
		t.Fatalf("want %d errors, got %v", len(want), err)
	}
	for i, w := range want {
		if got := joined.Unwrap()[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("error %d = %q, want it to start %q", i, got, w)
		}
	}
}

// A table or key written twice is reported in the project's words, at
// the second one's line, and hides no other mistake: the rest of the file
// is still checked (it used to stop at the first duplicate).
func TestDuplicateTable(t *testing.T) {
	src := minimal + "frob = 1\n[pool.cas.backend.cas1]\naddress = \"127.0.0.12\"\n" +
		"[pool.cas.backend.cas2]\naddress = \"127.0.0.13\"\nweight = 2\nweight = 3\nmax_conns = \"many\"\n"
	_, err := Parse("f.toml", []byte(src))
	want := []string{
		"f.toml:8: pool.cas.backend.cas1.frob: unknown key",
		"f.toml:9: pool.cas.backend.cas1: defined twice",
		"f.toml:14: pool.cas.backend.cas2.weight: defined twice",
		"f.toml:15: pool.cas.backend.cas2.max_conns:",
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != len(want) {
		t.Fatalf("got %v, want %d errors", err, len(want))
	}
	for i, w := range want {
		if got := joined.Unwrap()[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("error %d = %q, want it to start %q", i, got, w)
		}
	}
}

// Checking a config finds nothing wrong in a good one and changes
// nothing in it: not the token it reads, not the certificate it loads,
// not the patterns it compiles, not the cluster's keys and addresses. The
// file sets every one of them, and the config checked is compared with
// one decoded from the same file and never checked.
func TestCheckDoesNotModify(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	for name, body := range map[string]string{"token": "0123456789abcdef0123\n", "cert.pem": certPEM, "key.pem": keyPEM,
		"cluster.key": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := []byte(`
[admin]
listen = "127.0.0.1:0"
token_file = "token"
tls_cert_file = "cert.pem"
tls_key_file = "key.pem"
[cluster]
bind = "127.0.0.1:7946"
secret_file = "cluster.key"
[listener.epm]
listen = "127.0.0.1:135"
pool = "cas"
[pool.cas.check.banner]
type = "send-expect"
send = "hello"
expect_regex = "^ok"
[pool.cas.check.web]
type = "http"
port = 80
body = "up"
[pool.cas.backend.cas1]
address = "127.0.0.2"
`)
	file := filepath.Join(dir, "lb.toml")
	fresh := func() *Config {
		c, _, errs := decode(file, src)
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		c.resolvePaths()
		return c
	}
	c, untouched := fresh(), fresh()
	v := &checker{file: file}
	c.check(v)
	if len(v.errs) != 0 {
		t.Fatalf("a good config fails its check: %v", v.errs)
	}
	if !reflect.DeepEqual(c, untouched) {
		t.Fatalf("check changed the config:\nchecked   %+v\nunchecked %+v", c.Admin, untouched.Admin)
	}
	if v.read.token == "" || v.read.cert == nil || len(v.read.keys) != 1 {
		t.Fatalf("check did not read the token, certificate and key: %+v", v.read)
	}
	loaded, err := Parse(file, src)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Admin.Token != "0123456789abcdef0123" || loaded.Admin.Certificate == nil || len(loaded.Cluster.Keys) != 1 {
		t.Fatalf("Load did not keep what check read: %+v", loaded.Admin)
	}
}

// selfSigned makes a certificate and key in PEM, for the admin's TLS.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// Every word type reads what it writes, and an out-of-range value prints
// as a number instead of panicking inside a log call.
func TestWordsRoundTrip(t *testing.T) {
	for _, w := range []interface {
		encoding.TextMarshaler
		encoding.TextUnmarshaler
	}{new(Balance), new(KeyKind), new(OnDown), new(CheckType), new(LogFormat), new(LogLevel), new(DCERPC)} {
		b, _ := w.MarshalText()
		if err := w.UnmarshalText(b); err != nil {
			t.Errorf("%T: %q does not read back: %v", w, b, err)
		}
	}
	if s := Balance(9).String(); s != "balance(9)" {
		t.Errorf("Balance(9) = %q", s)
	}
}

// locate finds the line of every key, quoted table names and dotted keys
// included.
func TestLocate(t *testing.T) {
	src := "# c\n[pool.\"my pool\".backend.a]\naddress = \"x\"\n  weight=2\n[listener.l]\nlisten.x = 1\n"
	m := locate([]byte(src))
	for path, line := range map[string]int{"pool.my pool.backend.a": 2, "pool.my pool.backend.a.address": 3,
		"pool.my pool.backend.a.weight": 4, "listener.l.listen.x": 6} {
		if m[path] != line {
			t.Errorf("line of %s = %d, want %d", path, m[path], line)
		}
	}
}

// Values the kernel or reality would reject are refused at check time,
// with file, line and key, not at the next start.
func TestBoundsOfDurations(t *testing.T) {
	cases := []struct{ src, want string }{
		{"[pool.cas]\nkeepalive = \"1000000h\"\n", "f.toml:9: pool.cas.keepalive: 1000000h0m0s is too long: must be at most 9h6m7s"},
		{"[pool.cas.health]\ninterval = \"1ns\"\n", "f.toml:9: pool.cas.health.interval: 1ns is too short"},
		{"[global]\nsnapshot_file = \"p.json\"\nsnapshot_interval = \"1ns\"\n", "f.toml:10: global.snapshot_interval: 1ns is too short"},
		{"[pool.cas.backend.cas2]\naddress = \"[::1]\"\n", "f.toml:9: pool.cas.backend.cas2.address: \"[::1]\": give an IPv6 address without brackets"},
		{"[pool.cas.affinity]\nttl = \"100000h\"\n", "f.toml:9: pool.cas.affinity.ttl: 100000h0m0s is too long"},
		{"[pool.cas]\nidle_timeout = \"1ms\"\n", "f.toml:9: pool.cas.idle_timeout: 1ms is too short"},
	}
	for _, c := range cases {
		_, err := Parse("f.toml", []byte(minimal+c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

// Legal values that are likely wrong in front of a CAS array are warned
// about, with file, line and key: one backend (no failover), TCP-only
// checks (a hung CAS passes them), a TTL or idle timeout below Windows'
// 2h keepalive.
func TestWarnings(t *testing.T) {
	c, err := Parse("f.toml", []byte(minimal+"[pool.cas]\nidle_timeout = \"30m\"\n[pool.cas.affinity]\nttl = \"1h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{"f.toml:8: pool.cas.backend: one backend takes new clients", "f.toml:8: pool.cas.health: only TCP checks",
		"f.toml:11: pool.cas.affinity.ttl: 1h0m0s is below", "f.toml:9: pool.cas.idle_timeout: 30m0s is below"}
	if len(got) != len(want) {
		t.Fatalf("warnings %q, want %d", got, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("warning %d = %q, want %q...", i, got[i], w)
		}
	}
	c, err = Parse("f.toml", []byte(minimal+"[pool.cas.backend.cas2]\naddress = \"127.0.0.12\"\n"+
		"[pool.cas.check.epm]\ntype = \"send-expect\"\nsend_hex = \"05 00 0b\"\nexpect_hex = \"05000c\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Fatalf("a send-expect pool warned: %v", ws)
	}
	if ch := c.Pools["cas"].Checks["epm"]; !bytes.Equal(ch.SendBytes(), []byte{5, 0, 0x0b}) || !bytes.Equal(ch.ExpectBytes(), []byte{5, 0, 0x0c}) {
		t.Fatalf("hex bytes read as %x / %x", ch.SendBytes(), ch.ExpectBytes())
	}
}

// No bytes read as a config crash the loader; what it accepts passes its
// own check again, and what it refuses is told as *Error values with a
// file name.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "[pool.cas]\nconnect_retries = \"two\"\nbalance = \"x\"\n[pool.cas.check.c]\ntype = \"send-expect\"\nsend_hex = \"zz\"\n"))
	f.Add([]byte("[listener.a\n"))
	f.Add([]byte("[pool.cas.backend.x]\naddress = \"\"\"\nmulti\nline\"\"\"\n[pool.cas.backend.x]\n"))
	if b, err := os.ReadFile("../lb.toml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse("f.toml", src)
		if err != nil {
			joined, ok := err.(interface{ Unwrap() []error })
			errs := []error{err}
			if ok {
				errs = joined.Unwrap()
			}
			for _, e := range errs {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "f.toml" {
					t.Fatalf("error %v is not a *Error naming the file", e)
				}
			}
			return
		}
		v := &checker{file: c.File}
		c.check(v)
		if len(v.errs) != 0 {
			t.Fatalf("an accepted config fails its own check: %v", v.errs)
		}
		c.Warnings()
	})
}

// The PROXY protocol keys: a listener that takes headers must list who may
// send them, each entry an address or network.
func TestProxyProtocolKeys(t *testing.T) {
	l := "[listener.epmap]\nlisten = \"127.0.0.1:10135\"\npool = \"cas\"\n"
	src := strings.Replace(minimal, l, l+"proxy_protocol = true\n", 1)
	if _, err := Parse("f.toml", []byte(src)); err == nil || !strings.Contains(err.Error(), "f.toml:2: listener.epmap.proxy_trusted: required with proxy_protocol") {
		t.Fatalf("proxy_protocol without proxy_trusted: %v", err)
	}
	bad := strings.Replace(src, "proxy_protocol = true\n", "proxy_protocol = true\nproxy_trusted = [\"10.1.0.0/24\", \"lb1\"]\n", 1)
	if _, err := Parse("f.toml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "entry 2: \"lb1\" is not an address") {
		t.Fatalf("a host name in proxy_trusted: %v", err)
	}
	good := strings.Replace(bad, "\"lb1\"", "\"10.2.0.7\"", 1) + "[pool.cas]\nsend_proxy = \"v2\"\n"
	c, err := Parse("f.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Listeners["epmap"].TrustedNets()); got != "[10.1.0.0/24 10.2.0.7/32]" {
		t.Fatalf("trusted nets %s", got)
	}
	if c.Pools["cas"].SendProxy != ProxyV2 || !strings.Contains(fmt.Sprint(c.Warnings()), "Exchange does not") {
		t.Fatalf("send_proxy v2 read as %v, warnings %v", c.Pools["cas"].SendProxy, c.Warnings())
	}
}

// The lb.toml the package installs is a valid template: check accepts it
// (with the token installing makes) and warns of nothing but its
// placeholder CAS addresses, each named with what to do.
func TestPackagedTemplate(t *testing.T) {
	src, err := os.ReadFile("../packaging/lb.toml")
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(token, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	const installed = `token_file = "/etc/stickylb/admin.token"`
	if !bytes.Contains(src, []byte(installed)) {
		t.Fatalf("the packaged lb.toml lacks %s", installed)
	}
	c, err := Parse("../packaging/lb.toml", bytes.Replace(src, []byte(installed), []byte(`token_file = "`+token+`"`), 1))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Socket != "/run/stickylb/admin.sock" || c.Admin.Token == "" {
		t.Fatalf("the packaged lb.toml's admin API: socket %q, token %v; want the socket and a token", c.Admin.Socket, c.Admin.Token != "")
	}
	ws := c.Warnings()
	if len(ws) != 3 {
		t.Fatalf("%d warnings, want the 3 placeholders: %v", len(ws), ws)
	}
	for _, w := range ws {
		if !strings.Contains(w.Error(), "is a documentation address") || !strings.Contains(w.Error(), "put this CAS's address here") {
			t.Errorf("warning %v is not about a placeholder", w)
		}
	}
}

// How a listener takes its ports is decided in one place: a socket per
// port up to SmallRange in auto mode, sk_lookup above, falling back to a
// socket per port up to MaxPerPort where BPF is not allowed; per-port and
// sk-lookup as they say.
func TestRangeModeDecision(t *testing.T) {
	ports := func(n int) Ports { return Ports{{First: 1000, Last: uint16(999 + n)}} }
	for _, c := range []struct {
		mode             RangeMode
		n                int
		steers, fallback bool
	}{
		{RangeAuto, 1, false, true}, {RangeAuto, SmallRange, false, true}, {RangeAuto, SmallRange + 1, true, true},
		{RangeAuto, MaxPerPort + 1, true, false}, {RangePerPort, 500, false, false}, {RangeSkLookup, 2, true, false},
	} {
		if s, f := c.mode.Steers(ports(c.n)), c.mode.FallsBack(ports(c.n)); s != c.steers || (s && f != c.fallback) {
			t.Errorf("%s with %d ports: steers %v falls back %v; want %v %v", c.mode, c.n, s, f, c.steers, c.fallback)
		}
	}
}
