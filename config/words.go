package config

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// The words a config file may use for a setting are listed once, here,
// in the type that reads them. Each type's zero value is its default, so
// a runtime package that is handed one can switch on it without parsing
// and without an error path.

// Balance is how a pool chooses a backend for a client with no pin.
type Balance uint8

const (
	// Hash is weighted rendezvous hashing of the client key over backend
	// names: stable across processes and restarts, and removing a
	// backend moves only its own clients. The default.
	Hash Balance = iota
	// LeastConn picks the backend with the fewest open connections per
	// unit of weight.
	LeastConn
	// RoundRobin cycles through the backends in name order, by weight.
	RoundRobin
)

var balanceWords = []string{Hash: "hash", LeastConn: "least-conn", RoundRobin: "round-robin"}

func (b Balance) String() string                { return word(balanceWords, b, "balance") }
func (b Balance) MarshalText() ([]byte, error)  { return []byte(b.String()), nil }
func (b *Balance) UnmarshalText(t []byte) error { return readWord(balanceWords, b, t) }

// RangeMode is how a listener of several ports takes them.
type RangeMode uint8

const (
	// RangeAuto takes up to 16 ports with a socket each, more with
	// sk_lookup, falling back to a socket each up to 1024 ports where
	// BPF is not allowed. The default.
	RangeAuto RangeMode = iota
	// RangeSkLookup takes every port with one socket, to which a BPF
	// sk_lookup program steers them (Linux 5.9+, CAP_BPF and
	// CAP_NET_ADMIN).
	RangeSkLookup
	// RangePerPort binds a socket for every port (at most 1024).
	RangePerPort
)

var rangeWords = []string{RangeAuto: "auto", RangeSkLookup: "sk-lookup", RangePerPort: "per-port"}

func (m RangeMode) String() string                { return word(rangeWords, m, "range_mode") }
func (m RangeMode) MarshalText() ([]byte, error)  { return []byte(m.String()), nil }
func (m *RangeMode) UnmarshalText(t []byte) error { return readWord(rangeWords, m, t) }

// KeyKind says which part of a client's address identifies it.
type KeyKind uint8

const (
	// SrcIP pins every connection from one source address together
	// (Windows NLB "Single"). The default.
	SrcIP KeyKind = iota
	// SrcNet pins a whole source network together (NLB "Network" with a
	// /24 IPv4 prefix).
	SrcNet
	// Connection keys on source address and port: each connection is its
	// own client, so nothing is shared across connections (NLB "None").
	Connection
	// NoPins keeps no pins: every connection is balanced afresh.
	NoPins
)

var keyWords = []string{SrcIP: "src-ip", SrcNet: "src-net", Connection: "connection", NoPins: "none"}

func (k KeyKind) String() string                { return word(keyWords, k, "key") }
func (k KeyKind) MarshalText() ([]byte, error)  { return []byte(k.String()), nil }
func (k *KeyKind) UnmarshalText(t []byte) error { return readWord(keyWords, k, t) }

// OnDown is what happens to a pinned client whose backend cannot take it.
type OnDown uint8

const (
	// Repin moves the client to another backend. The default.
	Repin OnDown = iota
	// Reject refuses the connection, leaving the pin in place.
	Reject
)

var onDownWords = []string{Repin: "repin", Reject: "reject"}

func (o OnDown) String() string                { return word(onDownWords, o, "on_down") }
func (o OnDown) MarshalText() ([]byte, error)  { return []byte(o.String()), nil }
func (o *OnDown) UnmarshalText(t []byte) error { return readWord(onDownWords, o, t) }

// SendProxy is the PROXY protocol header a pool writes to its backends.
type SendProxy uint8

const (
	ProxyOff SendProxy = iota // no header: the default, and what Exchange needs
	ProxyV1                   // the text header
	ProxyV2                   // the binary header
)

var sendProxyWords = []string{ProxyOff: "off", ProxyV1: "v1", ProxyV2: "v2"}

func (p SendProxy) String() string                { return word(sendProxyWords, p, "send_proxy") }
func (p SendProxy) MarshalText() ([]byte, error)  { return []byte(p.String()), nil }
func (p *SendProxy) UnmarshalText(t []byte) error { return readWord(sendProxyWords, p, t) }

// DCERPC is how deep a pool's connections are read as DCE/RPC.
type DCERPC uint8

const (
	// RPCOff reads nothing: every connection goes by the zero-copy
	// path from its first byte. The default.
	RPCOff DCERPC = iota
	// RPCBinds reads each connection's first PDU each way, the bind
	// and its answer (interface and result), then hands the
	// connection to the zero-copy path.
	RPCBinds
	// RPCCalls reads every PDU header for the connection's life:
	// binds and alter_context, faults and their status, and the time
	// from each request to its answer. The copy stays in user space.
	RPCCalls
)

var dcerpcWords = []string{RPCOff: "off", RPCBinds: "binds", RPCCalls: "calls"}

func (d DCERPC) String() string                { return word(dcerpcWords, d, "dcerpc") }
func (d DCERPC) MarshalText() ([]byte, error)  { return []byte(d.String()), nil }
func (d *DCERPC) UnmarshalText(t []byte) error { return readWord(dcerpcWords, d, t) }

// CheckType is the kind of an active health check.
type CheckType uint8

const (
	TCPCheck CheckType = iota // connect only; the default
	SendExpectCheck
	TLSCheck
	HTTPCheck
	HTTPSCheck
	// RPCCheck asks the endpoint mapper for an interface's port and binds
	// to the interface there (DCE/RPC over TCP).
	RPCCheck
)

var checkWords = []string{TCPCheck: "tcp", SendExpectCheck: "send-expect", TLSCheck: "tls", HTTPCheck: "http", HTTPSCheck: "https", RPCCheck: "rpc"}

func (c CheckType) String() string                { return word(checkWords, c, "check") }
func (c CheckType) MarshalText() ([]byte, error)  { return []byte(c.String()), nil }
func (c *CheckType) UnmarshalText(t []byte) error { return readWord(checkWords, c, t) }

// LogFormat is how log lines are written.
type LogFormat uint8

const (
	TextLog LogFormat = iota // logfmt-style lines; the default
	JSONLog
)

var formatWords = []string{TextLog: "text", JSONLog: "json"}

func (f LogFormat) String() string                { return word(formatWords, f, "format") }
func (f LogFormat) MarshalText() ([]byte, error)  { return []byte(f.String()), nil }
func (f *LogFormat) UnmarshalText(t []byte) error { return readWord(formatWords, f, t) }

// LogLevel is the least severe level logged.
type LogLevel uint8

const (
	LevelInfo LogLevel = iota // the default
	LevelDebug
	LevelWarn
	LevelError
)

var levelWords = []string{LevelInfo: "info", LevelDebug: "debug", LevelWarn: "warn", LevelError: "error"}

func (l LogLevel) String() string                { return word(levelWords, l, "level") }
func (l LogLevel) MarshalText() ([]byte, error)  { return []byte(l.String()), nil }
func (l *LogLevel) UnmarshalText(t []byte) error { return readWord(levelWords, l, t) }

// Slog returns the level as log/slog counts it.
func (l LogLevel) Slog() slog.Level {
	return [...]slog.Level{LevelInfo: slog.LevelInfo, LevelDebug: slog.LevelDebug,
		LevelWarn: slog.LevelWarn, LevelError: slog.LevelError}[l%4]
}

// word spells v; a value no constant has is printed as a number instead
// of panicking, since a String method runs inside log and error calls.
func word[T ~uint8](words []string, v T, what string) string {
	if int(v) < len(words) {
		return words[v]
	}
	return what + "(" + strconv.Itoa(int(v)) + ")"
}

func readWord[T ~uint8](words []string, v *T, t []byte) error {
	s := strings.TrimSpace(string(t))
	for i, w := range words {
		if w == s {
			*v = T(i)
			return nil
		}
	}
	return fmt.Errorf("must be one of %s, not %q", strings.Join(words, ", "), s)
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

// StatusRange is an accepted range of HTTP status codes, written "200" or
// "200-399".
type StatusRange struct{ Min, Max int }

// UnmarshalText reads a status or a range of them.
func (r *StatusRange) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	z, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || a < 100 || z > 599 || a > z {
		return fmt.Errorf("must be a status or a range such as \"200-399\", not %q", s)
	}
	r.Min, r.Max = a, z
	return nil
}

// MarshalText writes the range back.
func (r StatusRange) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "%d-%d", r.Min, r.Max), nil
}

// Hex is bytes written as hexadecimal, spaces allowed ("05 00 0b 03"),
// for binary probes a TOML string cannot carry.
type Hex []byte

// UnmarshalText reads the hexadecimal digits.
func (h *Hex) UnmarshalText(b []byte) error {
	s := strings.Join(strings.Fields(string(b)), "")
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("not hexadecimal bytes (such as \"05 00 0b 03\"): %v", err)
	}
	*h = v
	return nil
}

// MarshalText writes the bytes back as hexadecimal.
func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
