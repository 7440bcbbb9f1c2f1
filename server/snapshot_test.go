//go:build linux

package server

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// The restore log counts the pins kept, not the pins read: a snapshot
// larger than max_entries logs what fits and drops the rest.
func TestRestoreCountsKeptPins(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts[:1], 1)
	dir := t.TempDir()
	src := "[global]\nsnapshot_file = \"" + filepath.Join(dir, "pins.json") + "\"\n" + listenersTOML(ports, "127.0.0.1") +
		"[pool.cas.health]\nenabled = false\n[pool.cas.affinity]\nmax_entries = %d\n" + backendsTOML(bs)
	first := start(t, strings.Replace(src, "%d", "100", 1), &lbtest.Buffer{})
	tb := first.Table("cas")
	for i := range 50 {
		tb.Insert(affinity.Record{Key: affinity.Keyer{}.Key(netip.AddrPortFrom(netip.MustParseAddr(lbtest.ClientIP(i)), 1)), Backend: bs[0].Name,
			Created: time.Now().Unix(), LastSeen: time.Now().Unix()})
	}
	if _, err := first.SaveSnapshot(filepath.Join(dir, "pins.json")); err != nil {
		t.Fatal(err)
	}
	var log lbtest.Buffer
	second := start(t, strings.Replace(src, "%d", "10", 1), &log)
	if n := second.Table("cas").Len(); n != 10 {
		t.Fatalf("%d pins held, want 10", n)
	}
	if !strings.Contains(log.String(), "restored=10 dropped=40") {
		t.Fatalf("restore log does not say 10 kept and 40 dropped:\n%s", log.String())
	}
}

// snapshotRig starts a server whose snapshot file is path.
func snapshotRig(t *testing.T, path string, log *lbtest.Buffer) *Server {
	t.Helper()
	bs, ports := lbtest.StartBackends(t, casHosts[:1], 1)
	src := "[global]\nsnapshot_file = \"" + path + "\"\n" + listenersTOML(ports, "127.0.0.1") +
		"[pool.cas.health]\nenabled = false\n" + backendsTOML(bs)
	return start(t, src, log)
}

// A corrupt snapshot is moved aside, not overwritten by the next save.
func TestCorruptSnapshotMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	os.WriteFile(path, []byte(`{"magic": "stickylb-pins", "version": 1, "pools": {`), 0o644)
	var log lbtest.Buffer
	srv := snapshotRig(t, path, &log)
	if !strings.Contains(log.String(), "is corrupt") || !strings.Contains(log.String(), "moved aside to "+path+".corrupt-") {
		t.Fatalf("no corrupt-and-moved line:\n%s", log.String())
	}
	if _, err := srv.SaveSnapshot(path); err != nil {
		t.Fatal(err)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("%d corrupt copies kept, want 1", len(aside))
	}
	if b, _ := os.ReadFile(aside[0]); !strings.HasSuffix(string(b), `"pools": {`) {
		t.Fatalf("the corrupt copy changed: %q", b)
	}
}

// A snapshot path that is a FIFO or a device does not hang or exhaust
// start-up: it is refused at once and named in the log.
func TestSnapshotNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.json")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, zero} {
		var log lbtest.Buffer
		done := make(chan struct{})
		go func() { snapshotRig(t, path, &log); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("start-up hangs on snapshot %s", path)
		}
		if !strings.Contains(log.String(), "is not a regular file") {
			t.Fatalf("%s: no 'not a regular file' line:\n%s", path, log.String())
		}
	}
}

// A last-seen time in the future is taken as now, so a pin cannot outlive
// its TTL by a clock error; a failed save is counted.
func TestSnapshotFutureTimesAndFailedSaves(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	future := time.Now().Add(24 * time.Hour).Unix()
	os.WriteFile(path, []byte(fmt.Sprintf(`{"magic":"stickylb-pins","version":1,"pools":{"cas":{"key":"src-ip","ipv4_prefix":24,"ipv6_prefix":64,`+
		`"pins":[{"client":"10.9.9.9","backend":"cas1","created":%d,"last_seen":%d}]}}}`, future, future)), 0o644)
	srv := snapshotRig(t, path, &lbtest.Buffer{})
	in, err := srv.Table("cas").Lookup(affinity.Keyer{}.Key(netip.MustParseAddrPort("10.9.9.9:1")))
	if err != nil {
		t.Fatal(err)
	}
	if in.Seen().After(time.Now()) || in.CreatedAt().After(time.Now()) {
		t.Fatalf("restored pin seen at %s, created %s: in the future", in.Seen(), in.CreatedAt())
	}
	if _, err := srv.SaveSnapshot(filepath.Join(dir, "no-such-dir", "pins.json")); err == nil {
		t.Fatal("a save into a missing directory succeeded")
	}
	if srv.SnapshotFailures.Load() != 1 {
		t.Fatalf("failed saves counted: %d, want 1", srv.SnapshotFailures.Load())
	}
}
