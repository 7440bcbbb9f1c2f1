// Package config reads and checks stickylb's TOML configuration.
//
// Decoding is strict: an unknown key, a value of the wrong type, a bad
// duration, a listener pointing at a missing pool and every other mistake
// is reported as an *Error naming the file, the line and the key, and all
// mistakes in a file are reported together. Listeners, pools and backends
// are named TOML tables ([listener.epmap], [pool.cas.backend.cas1]), so
// names are unique by construction and every key has one path. Defaults are
// filled in by Load; the example lb.toml documents each of them.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is a whole configuration file.
type Config struct {
	File      string               `toml:"-"`
	Global    Global               `toml:"global"`
	Admin     Admin                `toml:"admin"`
	Listeners map[string]*Listener `toml:"listener"`
	Pools     map[string]*Pool     `toml:"pool"`
}

// Global holds process-wide settings.
type Global struct {
	LogFormat    string   `toml:"log_format"`    // text (default) or json
	LogLevel     string   `toml:"log_level"`     // debug, info (default), warn, error
	DrainTimeout Duration `toml:"drain_timeout"` // default 30s
	// SnapshotFile keeps the affinity tables across restarts; relative
	// paths are relative to the config file. Empty: no snapshot.
	SnapshotFile     string   `toml:"snapshot_file"`
	SnapshotInterval Duration `toml:"snapshot_interval"` // default 1m
}

// Admin configures the admin HTTP listener (API, metrics, dashboard).
type Admin struct {
	// Listen is the admin address; default 127.0.0.1:9090; "off" turns
	// the admin listener off.
	Listen string `toml:"listen"`
	// TokenFile holds a bearer token that mutating calls must present.
	// Required when Listen is not a loopback address.
	TokenFile string `toml:"token_file"`
}

// Listener is one address clients connect to.
type Listener struct {
	Name        string `toml:"-"`
	Listen      string `toml:"listen"`
	Pool        string `toml:"pool"`
	BackendPort int    `toml:"backend_port"` // default: the listen port
}

// Pool is a set of backends with one affinity table, shared by the
// listeners that name it.
type Pool struct {
	Name             string              `toml:"-"`
	Balance          string              `toml:"balance"`            // hash (default), least-conn, round-robin
	OnDown           string              `toml:"on_down"`            // repin (default) or reject
	ConnectTimeout   Duration            `toml:"connect_timeout"`    // default 5s
	ConnectRetries   int                 `toml:"connect_retries"`    // default 2
	IdleTimeout      Duration            `toml:"idle_timeout"`       // default 0: off
	HalfCloseTimeout Duration            `toml:"half_close_timeout"` // default 1m
	Keepalive        Duration            `toml:"keepalive"`          // default 60s
	Failback         bool                `toml:"failback"`           // default false
	SlowStart        Duration            `toml:"slow_start"`         // default 0: off
	PassiveFall      int                 `toml:"passive_fall"`       // default 3; 0: off
	CloseOnDown      bool                `toml:"close_on_down"`      // default false
	Affinity         Affinity            `toml:"affinity"`
	Health           Health              `toml:"health"`
	Checks           map[string]*Check   `toml:"check"`
	Backends         map[string]*Backend `toml:"backend"`
}

// Check is one active health check of a pool. A backend is up only when
// every check passes. Without any [pool.NAME.check.*] table a pool has one
// tcp check with the [pool.NAME.health] settings.
type Check struct {
	Name string `toml:"-"`
	// Type: tcp (default), send-expect, tls, http or https.
	Type string `toml:"type"`
	// Port to probe; 0 (default) probes every backend port of the pool.
	Port int `toml:"port"`
	// Interval, Timeout, Rise and Fall default to [pool.NAME.health].
	Interval Duration `toml:"interval"`
	Timeout  Duration `toml:"timeout"`
	Rise     int      `toml:"rise"`
	Fall     int      `toml:"fall"`
	// send-expect: bytes to send, and the reply's expected prefix or a
	// regular expression it must match.
	Send        string `toml:"send"`
	Expect      string `toml:"expect"`
	ExpectRegex string `toml:"expect_regex"`
	// tls, https: server name to send and whether to verify the chain.
	SNI    string `toml:"sni"`
	Verify bool   `toml:"verify"`
	// http, https: the request and what passes.
	Method string `toml:"method"` // default GET
	Path   string `toml:"path"`   // default /
	Host   string `toml:"host"`   // Host header; default the backend address
	Status string `toml:"status"` // accepted range, default "200-399"
	Body   string `toml:"body"`   // regular expression the body must match

	StatusMin, StatusMax int `toml:"-"`
}

// Affinity configures a pool's affinity table.
type Affinity struct {
	Key        string   `toml:"key"`         // src-ip (default), src-net, connection, none
	IPv4Prefix int      `toml:"ipv4_prefix"` // default 24, for src-net
	IPv6Prefix int      `toml:"ipv6_prefix"` // default 64, for src-net
	TTL        Duration `toml:"ttl"`         // default 3h
	MaxEntries int      `toml:"max_entries"` // default 1000000
}

// Health configures a pool's active checks.
type Health struct {
	Enabled  bool     `toml:"enabled"`  // default true
	Interval Duration `toml:"interval"` // default 2s
	Timeout  Duration `toml:"timeout"`  // default 1s
	Rise     int      `toml:"rise"`     // default 2
	Fall     int      `toml:"fall"`     // default 3
}

// Backend is one server host of a pool.
type Backend struct {
	Name     string `toml:"-"`
	Address  string `toml:"address"`   // IP or host name, no port
	Weight   int    `toml:"weight"`    // default 1; 0 takes no new clients
	MaxConns int    `toml:"max_conns"` // default 0: no limit
}

// Duration is a time.Duration written as a string such as "5s" or "3h".
type Duration struct{ time.Duration }

// UnmarshalText reads a duration; "0" and "off" mean zero.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "off" || s == "0" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: write a number with a unit, such as \"500ms\", \"5s\", \"2m\" or \"3h\"", s)
	}
	if v < 0 {
		return fmt.Errorf("bad duration %q: must not be negative", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Error is one mistake in a config file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path, such as pool.cas.affinity.ttl
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Load reads, defaults and checks the config file at path.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, src)
}

// Parse decodes src (named file in messages), fills in defaults and checks
// it. A non-nil error holds one or more *Error, joined.
func Parse(file string, src []byte) (*Config, error) {
	c := &Config{File: file}
	md, err := toml.Decode(string(src), c)
	if err != nil {
		return nil, decodeError(file, err)
	}
	v := &checker{file: file, lines: locate(src)}
	for _, k := range md.Undecoded() {
		path := strings.Join(k, ".")
		v.errAt(path, "unknown key; see docs/config.md for the keys stickylb reads")
	}
	c.defaults(&md)
	c.check(v)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return c, nil
}

var tomlLine = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)

// decodeError turns the TOML library's errors into an *Error. Type errors
// come from the library as text, so their line is read back out of it.
func decodeError(file string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Usage != "" {
			msg += " (" + strings.TrimSpace(pe.Usage) + ")"
		}
		return &Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: msg}
	}
	if m := tomlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Key: m[2], Msg: m[3]}
	}
	return &Error{File: file, Msg: err.Error()}
}

// The spellings config accepts. The runtime packages parse the same words;
// a test checks they agree.
var (
	Balances     = []string{"hash", "least-conn", "round-robin"}
	AffinityKeys = []string{"src-ip", "src-net", "connection", "none"}
)

// Defaults, named so the docs and the checker agree.
const (
	DefaultAdminListen      = "127.0.0.1:9090"
	DefaultDrainTimeout     = 30 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultConnectRetries   = 2
	DefaultHalfCloseTimeout = time.Minute
	DefaultKeepalive        = 60 * time.Second
	DefaultTTL              = 3 * time.Hour
	DefaultMaxEntries       = 1_000_000
	DefaultInterval         = 2 * time.Second
	DefaultTimeout          = time.Second
	DefaultRise             = 2
	DefaultFall             = 3
	DefaultPassiveFall      = 3
)

// CheckTypes are the health check types.
var CheckTypes = []string{"tcp", "send-expect", "tls", "http", "https"}

func (c *Config) defaults(md *toml.MetaData) {
	if c.Global.LogFormat == "" {
		c.Global.LogFormat = "text"
	}
	if c.Global.LogLevel == "" {
		c.Global.LogLevel = "info"
	}
	if !md.IsDefined("global", "drain_timeout") {
		c.Global.DrainTimeout.Duration = DefaultDrainTimeout
	}
	if !md.IsDefined("global", "snapshot_interval") {
		c.Global.SnapshotInterval.Duration = time.Minute
	}
	if c.Admin.Listen == "" {
		c.Admin.Listen = DefaultAdminListen
	}
	dir := filepath.Dir(c.File)
	if c.Global.SnapshotFile != "" && !filepath.IsAbs(c.Global.SnapshotFile) {
		c.Global.SnapshotFile = filepath.Join(dir, c.Global.SnapshotFile)
	}
	if c.Admin.TokenFile != "" && !filepath.IsAbs(c.Admin.TokenFile) {
		c.Admin.TokenFile = filepath.Join(dir, c.Admin.TokenFile)
	}
	for name, l := range c.Listeners {
		l.Name = name
	}
	for name, p := range c.Pools {
		p.Name = name
		def := func(key ...string) bool { return !md.IsDefined(append([]string{"pool", name}, key...)...) }
		if p.Balance == "" {
			p.Balance = "hash"
		}
		if p.OnDown == "" {
			p.OnDown = "repin"
		}
		if def("connect_timeout") {
			p.ConnectTimeout.Duration = DefaultConnectTimeout
		}
		if def("connect_retries") {
			p.ConnectRetries = DefaultConnectRetries
		}
		if def("half_close_timeout") {
			p.HalfCloseTimeout.Duration = DefaultHalfCloseTimeout
		}
		if def("keepalive") {
			p.Keepalive.Duration = DefaultKeepalive
		}
		if def("passive_fall") {
			p.PassiveFall = DefaultPassiveFall
		}
		a := &p.Affinity
		if a.Key == "" {
			a.Key = "src-ip"
		}
		if def("affinity", "ipv4_prefix") {
			a.IPv4Prefix = 24
		}
		if def("affinity", "ipv6_prefix") {
			a.IPv6Prefix = 64
		}
		if def("affinity", "ttl") {
			a.TTL.Duration = DefaultTTL
		}
		if def("affinity", "max_entries") {
			a.MaxEntries = DefaultMaxEntries
		}
		h := &p.Health
		if def("health", "enabled") {
			h.Enabled = true
		}
		if def("health", "interval") {
			h.Interval.Duration = DefaultInterval
		}
		if def("health", "timeout") {
			h.Timeout.Duration = DefaultTimeout
		}
		if def("health", "rise") {
			h.Rise = DefaultRise
		}
		if def("health", "fall") {
			h.Fall = DefaultFall
		}
		for cname, ch := range p.Checks {
			ch.Name = cname
			if ch.Type == "" {
				ch.Type = "tcp"
			}
			if !md.IsDefined("pool", name, "check", cname, "interval") {
				ch.Interval = h.Interval
			}
			if !md.IsDefined("pool", name, "check", cname, "timeout") {
				ch.Timeout = h.Timeout
			}
			if !md.IsDefined("pool", name, "check", cname, "rise") {
				ch.Rise = h.Rise
			}
			if !md.IsDefined("pool", name, "check", cname, "fall") {
				ch.Fall = h.Fall
			}
			if ch.Method == "" {
				ch.Method = "GET"
			}
			if ch.Path == "" {
				ch.Path = "/"
			}
			if ch.Status == "" {
				ch.Status = "200-399"
			}
		}
		for bname, b := range p.Backends {
			b.Name = bname
			if def("backend", bname, "weight") {
				b.Weight = 1
			}
		}
	}
}

type checker struct {
	file  string
	lines map[string]int
	errs  []error
}

// errAt records a mistake at key path; the line is that of the key, or of
// the nearest table above it that the file names.
func (v *checker) errAt(path, format string, args ...any) {
	line := 0
	for p := path; p != ""; {
		if l, ok := v.lines[p]; ok {
			line = l
			break
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func (c *Config) check(v *checker) {
	g := c.Global
	if g.LogFormat != "text" && g.LogFormat != "json" {
		v.errAt("global.log_format", "must be \"text\" or \"json\", not %q", g.LogFormat)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, g.LogLevel) {
		v.errAt("global.log_level", "must be debug, info, warn or error, not %q", g.LogLevel)
	}
	if c.Global.SnapshotFile != "" && c.Global.SnapshotInterval.Duration <= 0 {
		v.errAt("global.snapshot_interval", "must be more than 0")
	}
	if a := c.Admin.Listen; a != "off" {
		ap, err := ParseListen(a)
		switch {
		case err != nil:
			v.errAt("admin.listen", "%v", err)
		case !ap.Addr().IsLoopback() && c.Admin.TokenFile == "":
			v.errAt("admin.listen", "%s is reachable from other machines: set admin.token_file to a file holding a bearer token, or listen on 127.0.0.1", a)
		}
		if c.Admin.TokenFile != "" {
			if b, err := os.ReadFile(c.Admin.TokenFile); err != nil {
				v.errAt("admin.token_file", "cannot read the token: %v", err)
			} else if len(strings.TrimSpace(string(b))) < 16 {
				v.errAt("admin.token_file", "the token in %s is shorter than 16 characters", c.Admin.TokenFile)
			}
		}
		for name, l := range c.Listeners {
			if l.Listen == a && err == nil && ap.Port() != 0 {
				v.errAt("admin.listen", "%s is also the address of listener %q", a, name)
			}
		}
	}
	if len(c.Listeners) == 0 {
		v.errAt("listener", "no listener defined: add a [listener.NAME] table with listen and pool")
	}
	if len(c.Pools) == 0 {
		v.errAt("pool", "no pool defined: add a [pool.NAME] table with at least one [pool.NAME.backend.NAME]")
	}
	seen := map[string]string{}
	byPort := map[uint16][]netip.AddrPort{}
	for _, name := range sortedKeys(c.Listeners) {
		l := c.Listeners[name]
		at := "listener." + name
		if l.Listen == "" {
			v.errAt(at+".listen", "missing: give the address to listen on, such as \"0.0.0.0:135\"")
		} else if ap, err := ParseListen(l.Listen); err != nil {
			v.errAt(at+".listen", "%v", err)
		} else {
			canon := ap.String()
			if other, dup := seen[canon]; dup && ap.Port() != 0 {
				v.errAt(at+".listen", "%s is also the address of listener %q", l.Listen, other)
			}
			if ap.Port() != 0 {
				// A wildcard address takes its port on every address, so
				// it clashes with any other listener on that port.
				for _, o := range byPort[ap.Port()] {
					if o != ap && (o.Addr().IsUnspecified() || ap.Addr().IsUnspecified()) {
						v.errAt(at+".listen", "%s overlaps %s of listener %q: a wildcard address takes port %d on every address", l.Listen, o, seen[o.String()], ap.Port())
					}
				}
				byPort[ap.Port()] = append(byPort[ap.Port()], ap)
			}
			seen[canon] = name
			if ap.Port() == 0 && l.BackendPort == 0 {
				v.errAt(at+".backend_port", "required when the listen port is 0")
			}
		}
		if l.BackendPort < 0 || l.BackendPort > 65535 {
			v.errAt(at+".backend_port", "must be a port from 1 to 65535, not %d", l.BackendPort)
		}
		if l.Pool == "" {
			v.errAt(at+".pool", "missing: name the pool this listener forwards to")
		} else if _, ok := c.Pools[l.Pool]; !ok {
			v.errAt(at+".pool", "pool %q is not defined (defined: %s)", l.Pool, strings.Join(sortedKeys(c.Pools), ", "))
		}
	}
	for _, name := range sortedKeys(c.Pools) {
		c.Pools[name].check(v, "pool."+name)
	}
}

func (p *Pool) check(v *checker, at string) {
	if !slices.Contains(Balances, p.Balance) {
		v.errAt(at+".balance", "must be one of %s, not %q", strings.Join(Balances, ", "), p.Balance)
	}
	if p.OnDown != "repin" && p.OnDown != "reject" {
		v.errAt(at+".on_down", "must be \"repin\" or \"reject\", not %q", p.OnDown)
	}
	if p.ConnectTimeout.Duration <= 0 {
		v.errAt(at+".connect_timeout", "must be more than 0")
	}
	if p.ConnectRetries < 0 || p.ConnectRetries > 16 {
		v.errAt(at+".connect_retries", "must be from 0 to 16, not %d", p.ConnectRetries)
	}
	if p.Keepalive.Duration > 0 && p.Keepalive.Duration < time.Second {
		v.errAt(at+".keepalive", "must be at least 1s, or 0 to turn TCP keepalive off")
	}
	a := p.Affinity
	if !slices.Contains(AffinityKeys, a.Key) {
		v.errAt(at+".affinity.key", "must be one of %s, not %q", strings.Join(AffinityKeys, ", "), a.Key)
	}
	if a.IPv4Prefix < 1 || a.IPv4Prefix > 32 {
		v.errAt(at+".affinity.ipv4_prefix", "must be from 1 to 32, not %d", a.IPv4Prefix)
	}
	if a.IPv6Prefix < 1 || a.IPv6Prefix > 128 {
		v.errAt(at+".affinity.ipv6_prefix", "must be from 1 to 128, not %d", a.IPv6Prefix)
	}
	if a.TTL.Duration <= 0 {
		v.errAt(at+".affinity.ttl", "must be more than 0")
	}
	if a.MaxEntries < 1 || a.MaxEntries > 100_000_000 {
		v.errAt(at+".affinity.max_entries", "must be from 1 to 100000000, not %d", a.MaxEntries)
	}
	h := p.Health
	v.timing(at+".health", h.Interval, h.Timeout, h.Rise, h.Fall)
	if p.PassiveFall < 0 || p.PassiveFall > 100 {
		v.errAt(at+".passive_fall", "must be from 0 (off) to 100, not %d", p.PassiveFall)
	}
	for _, name := range sortedKeys(p.Checks) {
		p.Checks[name].check(v, at+".check."+name)
	}
	if len(p.Backends) == 0 {
		v.errAt(at+".backend", "no backend: add at least one [%s.backend.NAME] with an address", at)
	}
	addrs := map[string]string{}
	for _, name := range sortedKeys(p.Backends) {
		b := p.Backends[name]
		bat := at + ".backend." + name
		switch {
		case b.Address == "":
			v.errAt(bat+".address", "missing: give the backend's IP address or host name")
		case strings.ContainsAny(b.Address, "/ "):
			v.errAt(bat+".address", "%q is not a host", b.Address)
		default:
			if _, _, err := net.SplitHostPort(b.Address); err == nil {
				v.errAt(bat+".address", "%q has a port: give the host only; the port is the listener's (or its backend_port)", b.Address)
			} else if other, dup := addrs[b.Address]; dup {
				v.errAt(bat+".address", "%s is also the address of backend %q", b.Address, other)
			}
			addrs[b.Address] = name
		}
		if b.Weight < 0 || b.Weight > 1000 {
			v.errAt(bat+".weight", "must be from 0 to 1000, not %d", b.Weight)
		}
		if b.MaxConns < 0 {
			v.errAt(bat+".max_conns", "must be 0 (no limit) or more, not %d", b.MaxConns)
		}
	}
}

// timing checks a health check's interval, timeout, rise and fall, which
// [pool.NAME.health] and each [pool.NAME.check.NAME] have.
func (v *checker) timing(at string, interval, timeout Duration, rise, fall int) {
	if interval.Duration <= 0 {
		v.errAt(at+".interval", "must be more than 0")
	}
	if timeout.Duration <= 0 {
		v.errAt(at+".timeout", "must be more than 0")
	}
	if rise < 1 {
		v.errAt(at+".rise", "must be at least 1, not %d", rise)
	}
	if fall < 1 {
		v.errAt(at+".fall", "must be at least 1, not %d", fall)
	}
}

func (c *Check) check(v *checker, at string) {
	if !slices.Contains(CheckTypes, c.Type) {
		v.errAt(at+".type", "must be one of %s, not %q", strings.Join(CheckTypes, ", "), c.Type)
	}
	if c.Port < 0 || c.Port > 65535 {
		v.errAt(at+".port", "must be a port from 1 to 65535, or 0 for every backend port, not %d", c.Port)
	}
	v.timing(at, c.Interval, c.Timeout, c.Rise, c.Fall)
	for key, re := range map[string]string{"expect_regex": c.ExpectRegex, "body": c.Body} {
		if _, err := regexp.Compile(re); err != nil {
			v.errAt(at+"."+key, "bad regular expression: %v", err)
		}
	}
	if c.Type == "send-expect" && c.Expect != "" && c.ExpectRegex != "" {
		v.errAt(at+".expect_regex", "give expect or expect_regex, not both")
	}
	lo, hi, ok := strings.Cut(c.Status, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
		v.errAt(at+".status", "must be a status or a range such as \"200-399\", not %q", c.Status)
	}
	c.StatusMin, c.StatusMax = a, b
}

// ParseListen reads a listen address: an IP (or nothing, for every
// address) and a port.
func ParseListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not host:port (IPv6 goes in brackets: \"[::]:135\")", s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	if host == "" {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(n)), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}
