package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without [cluster] an instance is no member, and the sync timeout has
// its default.
func TestClusterOffByDefault(t *testing.T) {
	c, err := Parse("min.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Enabled() || c.Cluster.SyncTimeout.Duration != DefaultSyncTimeout {
		t.Fatalf("cluster = %+v; want off with the default sync timeout", c.Cluster)
	}
}

// Every mistake of a [cluster] section (wildcard bind without advertise,
// peers without a port, a short key, too short an interval) is reported
// with its key.
func TestClusterMistakes(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("c2hvcnQ=\n"), 0o600) // "short"
	src := minimal + `
[cluster]
bind = "0.0.0.0:7946"
peers = ["10.0.0.12", "10.0.0.13:x"]
secret_file = "` + short + `"
sync_interval = "10ms"
`
	_, err := Parse("lb.toml", []byte(src))
	if err == nil {
		t.Fatal("a cluster section full of mistakes loaded")
	}
	for _, want := range []string{
		"lb.toml:10: cluster.bind: 0.0.0.0:7946 listens on every address: set cluster.advertise",
		`lb.toml:11: cluster.peers: entry 1 ("10.0.0.12") is not host:port`,
		`lb.toml:11: cluster.peers: entry 2 ("10.0.0.13:x"): port "x" is not a number`,
		"lb.toml:12: cluster.secret_file: " + short + " line 1 holds 5 bytes; a gossip key is 16, 24 or 32 bytes",
		"lb.toml:13: cluster.sync_interval: 10ms is too short",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

// Off loopback a cluster needs a secret, and a good secret file is read
// (once) into the config.
func TestClusterNeedsSecretOffLoopback(t *testing.T) {
	_, err := Parse("lb.toml", []byte(minimal+"\n[cluster]\nbind = \"10.0.0.11:7946\"\n"))
	if err == nil || !strings.Contains(err.Error(), "cluster.secret_file: members talk over 10.0.0.11:7946 unencrypted") {
		t.Fatalf("err = %v; want the missing secret named", err)
	}
	key := filepath.Join(t.TempDir(), "k")
	os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	c, err := Parse("lb.toml", []byte(minimal+"\n[cluster]\nbind = \"10.0.0.11:7946\"\nsecret_file = \""+key+"\"\npeers = [\"10.0.0.12:7946\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Cluster.Keys; len(k) != 1 || len(k[0]) != 32 {
		t.Fatalf("keys %d, first of %d bytes; want one of 32", len(k), len(k[0]))
	}
	// A keyring: the first key sends, the others are accepted too; a bad
	// line is named.
	os.WriteFile(key, []byte("# new key first\nMTIzNDU2Nzg5MGFiY2RlZg==\n\nMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	if c, err = Parse("lb.toml", []byte(minimal+"\n[cluster]\nbind = \"10.0.0.11:7946\"\nsecret_file = \""+key+"\"\npeers = [\"10.0.0.12:7946\"]\n")); err != nil {
		t.Fatal(err)
	}
	if k := c.Cluster.Keys; len(k) != 2 || string(k[0]) != "1234567890abcdef" {
		t.Fatalf("keyring %q; want the 16-byte key first, then the 32-byte one", k)
	}
	os.WriteFile(key, []byte("MTIzNDU2Nzg5MGFiY2RlZg==\nnot base64!\n"), 0o600)
	_, err = Parse("lb.toml", []byte(minimal+"\n[cluster]\nbind = \"10.0.0.11:7946\"\nsecret_file = \""+key+"\"\npeers = [\"10.0.0.12:7946\"]\n"))
	if err == nil || !strings.Contains(err.Error(), key+" line 2 is not base64") {
		t.Fatalf("err = %v; want line 2 named", err)
	}
}

// check warns of a clustered pool balanced by a member's own counters,
// and of a member with no peers.
func TestClusterWarnings(t *testing.T) {
	src := strings.Replace(minimal, "[pool.cas.backend.cas1]", "[pool.cas]\nbalance = \"least-conn\"\n\n[pool.cas.backend.cas1]", 1) + "\n[cluster]\nbind = \"127.0.0.1:7946\"\n"
	c, err := Parse("lb.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, w := range c.Warnings() {
		all = append(all, w.Error())
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{"pool.cas.balance: least-conn places a new client by this member's own counters", "cluster.peers: no peers"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings lack %q:\n%s", want, joined)
		}
	}
}
