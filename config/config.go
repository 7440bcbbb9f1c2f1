// Package config reads and checks stickylb's TOML configuration.
//
// Decoding is strict: an unknown key, a value of the wrong type, a bad
// duration, a listener pointing at a missing pool and every other mistake
// is reported as an *Error naming the file, the line and the key, and all
// mistakes in a file are reported together. Listeners, pools and backends
// are named TOML tables ([listener.epmap], [pool.cas.backend.cas1]), so
// names are unique by construction and every key has one path.
//
// A file is decoded once into typed values: settings that take one of a
// few words (balance, on_down, affinity key, check type) are types that
// read themselves, so the runtime packages are handed values they can use
// without parsing. Every table is decoded over its defaults, which are
// named in defaults.go and quoted by the example lb.toml.
package config

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/stickylb/stickylb/dcerpc"
)

// Config is a whole configuration file.
type Config struct {
	File      string               `toml:"-"`
	lines     map[string]int       // key path -> line, for Warnings
	Global    Global               `toml:"global"`
	Admin     Admin                `toml:"admin"`
	Cluster   Cluster              `toml:"cluster"`
	Listeners map[string]*Listener `toml:"listener"`
	Pools     map[string]*Pool     `toml:"pool"`
}

// Global holds process-wide settings.
type Global struct {
	LogFormat    LogFormat `toml:"log_format"`    // text (default) or json
	LogLevel     LogLevel  `toml:"log_level"`     // debug, info (default), warn, error
	DrainTimeout Duration  `toml:"drain_timeout"` // default 30s
	// StopGrace is how long a stop keeps accepting while readiness
	// already says no, so that keepalived or a router moves the address
	// before any client is refused; then the drain begins. Default 0.
	StopGrace Duration `toml:"stop_grace"`
	// SnapshotFile keeps the affinity tables across restarts; relative
	// paths are relative to the config file. Empty: no snapshot.
	SnapshotFile     string   `toml:"snapshot_file"`
	SnapshotInterval Duration `toml:"snapshot_interval"` // default 1m
	// JournalInterval bounds how long a pin change waits before it is
	// appended to the journal beside the snapshot file (and fsynced), so
	// a crash loses at most this much; default 1s.
	JournalInterval Duration `toml:"journal_interval"`
}

// Admin configures the admin HTTP listener (API, metrics, dashboard).
type Admin struct {
	// Listen is the admin address; default 127.0.0.1:9090; "off" turns
	// the admin listener off.
	Listen string `toml:"listen"`
	// TokenFile holds a bearer token that mutating calls must present.
	// Required when Listen is not a loopback address.
	TokenFile string `toml:"token_file"`
	// Hosts are the host names the admin API answers to besides its IP
	// addresses and localhost; a request naming any other host is
	// refused, which stops DNS-rebinding pages.
	Hosts []string `toml:"hosts"`
	// TokenForReads asks for the token on reads too, but for /healthz,
	// /readyz and the dashboard's page; needs TokenFile.
	TokenForReads bool `toml:"token_for_reads"`
	// TLSCertFile and TLSKeyFile, both or neither, serve the admin API
	// over HTTPS, so that the token does not cross the network in clear.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	// Socket is a Unix socket path the API is served on too, for ctl on
	// this host: its file (mode 0660, the service's user and group)
	// decides who may connect, and a call over it needs no token.
	// Default "" (none).
	Socket string `toml:"socket"`

	// Token is what TokenFile held when the config was checked, and
	// Certificate the pair the TLS files held (nil without); kept by
	// Load, never by the checks.
	Token       string           `toml:"-"`
	Certificate *tls.Certificate `toml:"-"`
}

// Listener is one address clients connect to.
type Listener struct {
	Name string `toml:"-"`
	// Listen is the address and port, or ports: "10.0.0.50:135",
	// "10.0.0.50:6005-59530", "10.0.0.50:135,6005-59530". A listener of
	// several ports forwards each connection to the port its client
	// dialled.
	Listen      string `toml:"listen"`
	Pool        string `toml:"pool"`
	BackendPort int    `toml:"backend_port"` // default: the listen port; not with several ports
	// RangeMode is how a listener of several ports takes them: one socket
	// steered by a BPF sk_lookup program (sk-lookup), a socket per port
	// (per-port), or auto (the default): per-port up to 16 ports, else
	// sk-lookup, falling back to per-port up to 1024 ports where BPF is
	// not allowed.
	RangeMode RangeMode `toml:"range_mode"`
	// ProxyProtocol takes the client's address from a PROXY protocol
	// header (v1 or v2) that every connection must start with; only the
	// sources in ProxyTrusted may connect. For a listener behind other
	// balancers; default off.
	ProxyProtocol      bool     `toml:"proxy_protocol"`
	ProxyTrusted       []string `toml:"proxy_trusted"`        // networks or addresses, such as "10.1.0.0/24"
	ProxyHeaderTimeout Duration `toml:"proxy_header_timeout"` // default 3s
	// InspectDCERPC, on a listener of the endpoint mapper (135), follows
	// it as Cisco ASA's `inspect dcerpc` does: each port a CAS hands a
	// client is opened on the listener's address for that client, to
	// that CAS. PinholeTimeout is how long a learned port outlives its
	// last connection (default 2m).
	InspectDCERPC  bool     `toml:"inspect_dcerpc"`
	PinholeTimeout Duration `toml:"pinhole_timeout"`

	// addr and ports are Listen parsed, kept by Load (ListenAddr).
	addr  netip.Addr
	ports Ports
}

// TrustedNets returns ProxyTrusted as prefixes; a loaded config has
// checked every entry.
func (l *Listener) TrustedNets() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.ProxyTrusted))
	for _, s := range l.ProxyTrusted {
		if p, err := parseNet(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseNet reads a network ("10.1.0.0/24") or a single address.
func parseNet(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not an address or a network such as \"10.1.0.0/24\"", s)
	}
	return p.Masked(), nil
}

// Addr is the address to listen on with the listener's first port; the
// zero AddrPort if Listen is not one, which a loaded config has ruled out.
func (l *Listener) Addr() netip.AddrPort {
	a, ps := l.ListenAddr()
	return netip.AddrPortFrom(a, ps[0].First)
}

// TargetPort is the port connections are forwarded to on a backend; 0
// for a listener of several ports, which forwards each connection to the
// port its client dialled.
func (l *Listener) TargetPort() int {
	switch {
	case l.BackendPort != 0:
		return l.BackendPort
	case l.Multi():
		return 0
	}
	return int(l.Addr().Port())
}

// Pool is a set of backends with one affinity table, shared by the
// listeners that name it.
type Pool struct {
	Name             string    `toml:"-"`
	Balance          Balance   `toml:"balance"`            // hash (default), least-conn, round-robin
	OnDown           OnDown    `toml:"on_down"`            // repin (default) or reject
	ConnectTimeout   Duration  `toml:"connect_timeout"`    // default 5s
	ConnectRetries   int       `toml:"connect_retries"`    // default 2
	IdleTimeout      Duration  `toml:"idle_timeout"`       // default 0: off
	HalfCloseTimeout Duration  `toml:"half_close_timeout"` // default 1m
	Keepalive        Duration  `toml:"keepalive"`          // default 60s
	Failback         bool      `toml:"failback"`           // default false
	SlowStart        Duration  `toml:"slow_start"`         // default 0: off
	PassiveFall      int       `toml:"passive_fall"`       // default 3; 0: off
	CloseOnDown      bool      `toml:"close_on_down"`      // default false
	SendProxy        SendProxy `toml:"send_proxy"`         // off (default), v1 or v2; Exchange does not take it
	// DCERPC says the pool carries DCE/RPC (MAPI) and how deep its
	// connections are read: "off" (default), "binds" (the bind and its
	// answer, then the zero-copy path) or "calls" (every PDU header:
	// faults, call latency). Bytes that are not DCE/RPC are forwarded
	// unchanged and counted.
	DCERPC DCERPC `toml:"dcerpc"`
	// Transparent dials each backend from the client's own address, so
	// the CAS sees the client as it did behind NLB; it needs
	// CAP_NET_ADMIN and routing (docs/deploy.md). Default false.
	Transparent bool                `toml:"transparent"`
	Affinity    Affinity            `toml:"affinity"`
	Health      Health              `toml:"health"`
	Limits      Limits              `toml:"limits"`
	Outlier     Outlier             `toml:"-"` // [pool.NAME.outlier], decoded when the file has it
	Checks      map[string]*Check   `toml:"-"` // [pool.NAME.check.NAME], decoded one by one
	Backends    map[string]*Backend `toml:"-"` // [pool.NAME.backend.NAME], likewise
}

// SendBytes is what a send-expect check sends.
func (c *Check) SendBytes() []byte {
	if len(c.SendHex) > 0 {
		return c.SendHex
	}
	return []byte(c.Send)
}

// ExpectBytes is the prefix a send-expect check's reply must start with.
func (c *Check) ExpectBytes() []byte {
	if len(c.ExpectHex) > 0 {
		return c.ExpectHex
	}
	return []byte(c.Expect)
}

// Patterns compiles expect_regex and body; nil where not set. The config
// holds their text only: compiled here, by the health probe that uses
// them, so that a checked config carries nothing the check made. A loaded
// config's patterns compile (check refused the file otherwise).
func (c *Check) Patterns() (expect, body *regexp.Regexp, err error) {
	compile := func(key, src string) *regexp.Regexp {
		if src == "" || err != nil {
			return nil
		}
		re, e := regexp.Compile(src)
		if e != nil {
			err = fmt.Errorf("check %s: %s: %w", c.Name, key, e)
		}
		return re
	}
	return compile("expect_regex", c.ExpectRegex), compile("body", c.Body), err
}

// ActiveChecks returns the checks that decide whether a backend is up, in
// name order: the configured ones, or without any, one tcp check with the
// [pool.NAME.health] settings (none when health.enabled is false).
func (p *Pool) ActiveChecks() []*Check {
	if len(p.Checks) == 0 {
		if !p.Health.Enabled {
			return nil
		}
		ch := DefaultCheck(p.Health)
		ch.Name = "tcp"
		return []*Check{&ch}
	}
	out := make([]*Check, 0, len(p.Checks))
	for _, name := range slices.Sorted(maps.Keys(p.Checks)) {
		out = append(out, p.Checks[name])
	}
	return out
}

// Check is one active health check of a pool. A backend is up only when
// every check passes. Without any [pool.NAME.check.*] table a pool has one
// tcp check with the [pool.NAME.health] settings.
type Check struct {
	Name string    `toml:"-"`
	Type CheckType `toml:"type"` // tcp (default), send-expect, tls, http, https or rpc
	// Port to probe; 0 (default) probes every backend port of the pool,
	// and for rpc, the endpoint mapper on 135.
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
	// send_hex and expect_hex are send and expect for binary protocols
	// (an RPC bind to the endpoint mapper, say), written in hexadecimal.
	SendHex   Hex `toml:"send_hex"`
	ExpectHex Hex `toml:"expect_hex"`
	// tls, https: server name to send and whether to verify the chain.
	SNI    string `toml:"sni"`
	Verify bool   `toml:"verify"`
	// http, https: the request and what passes.
	Method string      `toml:"method"` // default GET
	Path   string      `toml:"path"`   // default /
	Host   string      `toml:"host"`   // Host header; default the backend address
	Status StatusRange `toml:"status"` // accepted range, default "200-399"
	Body   string      `toml:"body"`   // regular expression the body must match
	// rpc: the interface to look up and bind: "emsmdb" (RPC Client
	// Access), "nspi" (Address Book) or a UUID with interface_version
	// ("major.minor").
	Interface        string `toml:"interface"`
	InterfaceVersion string `toml:"interface_version"`
}

// EndpointMapperPort is where an rpc check asks for an interface's port
// unless it names another.
const EndpointMapperPort = 135

// RPCInterface is the interface an rpc check binds; a loaded config has
// checked it.
func (c *Check) RPCInterface() dcerpc.Syntax {
	s, _ := rpcInterface(c.Interface, c.InterfaceVersion)
	return s
}

// rpcInterface reads an rpc check's interface and version.
func rpcInterface(name, version string) (dcerpc.Syntax, error) {
	var named dcerpc.Syntax
	switch strings.ToLower(name) {
	case "emsmdb":
		named = dcerpc.EMSMDB
	case "nspi":
		named = dcerpc.NSPI
	case "":
		return dcerpc.Syntax{}, fmt.Errorf("missing: name the interface, \"emsmdb\" (RPC Client Access), \"nspi\" (Address Book) or a UUID")
	default:
		u, err := dcerpc.ParseUUID(name)
		if err != nil {
			return dcerpc.Syntax{}, fmt.Errorf("%v, or \"emsmdb\" or \"nspi\"", err)
		}
		named = dcerpc.Syntax{UUID: u}
		if version == "" {
			return dcerpc.Syntax{}, fmt.Errorf("a UUID needs interface_version, such as \"0.81\"")
		}
	}
	if version == "" {
		return named, nil
	}
	major, minor, ok := strings.Cut(version, ".")
	ma, err1 := strconv.ParseUint(major, 10, 16)
	mi, err2 := strconv.ParseUint(minor, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return dcerpc.Syntax{}, fmt.Errorf("interface_version %q is not major.minor, such as \"0.81\"", version)
	}
	named.Major, named.Minor = uint16(ma), uint16(mi)
	return named, nil
}

// Affinity configures a pool's affinity table.
type Affinity struct {
	Key        KeyKind  `toml:"key"`         // src-ip (default), src-net, connection, none
	IPv4Prefix int      `toml:"ipv4_prefix"` // default 24, for src-net
	IPv6Prefix int      `toml:"ipv6_prefix"` // default 64, for src-net
	TTL        Duration `toml:"ttl"`         // default 3h
	MaxEntries int      `toml:"max_entries"` // default 1000000
	// NewPinsPerSecond caps the pins made for new clients, so a flood of
	// source addresses cannot push out the pins of sessions between
	// connections; clients over the cap are balanced unpinned. 0: off.
	NewPinsPerSecond float64 `toml:"new_pins_per_second"`
	// MaxPinsPerPrefix bounds the pins of one client prefix (the limits'
	// prefix: an IPv6 /64 by default), so a flood from one prefix can
	// neither fill the table nor evict anyone. 0: max_entries / 16.
	MaxPinsPerPrefix int `toml:"max_pins_per_prefix"`
}

// PrefixQuota is the pins one client prefix may hold.
func (a Affinity) PrefixQuota() int {
	if a.MaxPinsPerPrefix > 0 {
		return a.MaxPinsPerPrefix
	}
	return max(1, a.MaxEntries/16)
}

// Limits bound what one client address may take of a pool, so that one
// client cannot hurt the others. Every limit is off (0) by default.
type Limits struct {
	MaxConnsPerClient  int     `toml:"max_conns_per_client"`  // open connections at once
	ConnRatePerClient  float64 `toml:"conn_rate_per_client"`  // new connections per second
	ConnBurstPerClient int     `toml:"conn_burst_per_client"` // default: the rate, at least 1
	// IPv4Prefix and IPv6Prefix say what one client is for these limits:
	// an IPv4 address (32) and an IPv6 /64 by default.
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
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
	// Backup takes new clients only while no backend that is not a
	// backup can (HAProxy's and nginx's backup; Windows NLB's single-host
	// rule). Default false.
	Backup bool `toml:"backup"`
}

// Error is one mistake in a config file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path, such as pool.cas.affinity.ttl
	Msg  string

	twice bool // a table or key defined twice: the rest can still be checked
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
