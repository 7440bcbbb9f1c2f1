package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Cluster makes this instance one member of a cluster whose members share
// every pin (docs/cluster.md). It is off unless Bind is set, and a single
// instance behaves as if the section were not there.
type Cluster struct {
	// Bind is the address and port members talk on, over both UDP and
	// TCP, such as "10.0.0.11:7946".
	Bind string `toml:"bind"`
	// Advertise is the address other members reach this one at; default
	// Bind's, which must then not be 0.0.0.0 or [::].
	Advertise string `toml:"advertise"`
	// Peers are other members' Bind addresses to join; listing every
	// member, this one included, on every member is simplest.
	Peers []string `toml:"peers"`
	// SecretFile holds the shared gossip key: 16, 24 or 32 random bytes
	// in base64. Required unless Bind is a loopback address.
	SecretFile string `toml:"secret_file"`
	// NodeName names this member; default the host name. Unique per member.
	NodeName string `toml:"node_name"`
	// SyncTimeout bounds the wait at start-up for a full copy of the pins
	// from a peer before this member serves; default 10s. Past it, the
	// member serves with what it has and says so.
	SyncTimeout Duration `toml:"sync_timeout"`
	// SyncInterval is how often two members exchange their whole tables,
	// which repairs any change a member missed; default 30s.
	SyncInterval Duration `toml:"sync_interval"`

	// Kept by Load from its checks, so a member neither parses nor reads
	// a file again: the bind and advertise addresses (AdvertiseAddr is
	// BindAddr's without advertise) and the gossip keys (none without a
	// secret file; the first is the one messages are sent with).
	BindAddr      netip.AddrPort `toml:"-"`
	AdvertiseAddr netip.AddrPort `toml:"-"`
	Keys          [][]byte       `toml:"-"`
}

// Enabled says whether this instance is a cluster member.
func (c *Cluster) Enabled() bool { return c.Bind != "" }

// Name is the member's name: NodeName, or the host name.
func (c *Cluster) Name() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "stickylb"
	}
	return h
}

// readSecret reads the gossip keyring: one base64 key a line (blank
// lines and # comments skipped), the first the one messages are sent
// with, the others also accepted, as Serf's and Consul's keyrings do, so
// that a key can be changed member by member without a partition
// (docs/cluster.md, "Changing the key"). None without a secret file.
func (c *Cluster) readSecret() ([][]byte, error) {
	if c.SecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the cluster secret: %w", err)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d is not base64: make a key with: head -c 32 /dev/urandom | base64", c.SecretFile, i+1)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("%s line %d holds %d bytes; a gossip key is 16, 24 or 32 bytes: make one with: head -c 32 /dev/urandom | base64", c.SecretFile, i+1, n)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key: make one with: head -c 32 /dev/urandom | base64 > %s", c.SecretFile, c.SecretFile)
	}
	return keys, nil
}

func (c *Cluster) check(v *checker) {
	if !c.Enabled() {
		if c.Advertise != "" || len(c.Peers) > 0 || c.SecretFile != "" || c.NodeName != "" {
			v.errAt("cluster.bind", "[cluster] sets other keys but no bind address, so the cluster is off: set bind (such as \"10.0.0.11:7946\") or remove the section")
		}
		return
	}
	bind, err := ParseListen(c.Bind)
	v.read.bind, v.read.advertise = bind, bind
	switch {
	case err != nil:
		v.errAt("cluster.bind", "%v", err)
	case bind.Port() == 0:
		v.errAt("cluster.bind", "%s: give a fixed port, such as 7946: peers must know where to find this member", c.Bind)
	case bind.Addr().IsUnspecified() && c.Advertise == "":
		v.errAt("cluster.bind", "%s listens on every address: set cluster.advertise to the one peers reach this member at", c.Bind)
	}
	if c.Advertise != "" {
		ap, err := ParseListen(c.Advertise)
		if err != nil || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			v.errAt("cluster.advertise", "%q is not an address and port peers can reach, such as \"10.0.0.11:7946\"", c.Advertise)
		}
		v.read.advertise = ap
	}
	for i, p := range c.Peers {
		if _, port, err := net.SplitHostPort(p); err != nil || port == "" {
			v.errAt("cluster.peers", "entry %d (%q) is not host:port, such as \"10.0.0.12:7946\"", i+1, p)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			v.errAt("cluster.peers", "entry %d (%q): port %q is not a number from 1 to 65535", i+1, p, port)
		}
	}
	if v.read.keys, err = c.readSecret(); err != nil {
		v.errAt("cluster.secret_file", "%v", err)
	} else if c.SecretFile == "" && !bind.Addr().IsLoopback() {
		v.errAt("cluster.secret_file", "members talk over %s unencrypted and anyone who reaches it can change pins: set secret_file to a shared key (head -c 32 /dev/urandom | base64)", c.Bind)
	}
	if strings.ContainsAny(c.NodeName, " \t\n") {
		v.errAt("cluster.node_name", "%q has white space; use a name such as \"lb1\"", c.NodeName)
	}
	v.within("cluster.sync_timeout", c.SyncTimeout, 0, 10*time.Minute)
	v.within("cluster.sync_interval", c.SyncInterval, time.Second, time.Hour)
}
