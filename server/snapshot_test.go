//go:build linux

package server

import (
	"net/netip"
	"path/filepath"
	"strings"
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
	first := start(t, strings.Replace(src, "%d", "100", 1), &syncBuf{})
	tb := first.Table("cas")
	for i := range 50 {
		tb.Restore(affinity.Info{Key: affinity.Keyer{}.Key(netip.AddrPortFrom(netip.MustParseAddr(lbtest.ClientIP(i)), 1)), Backend: bs[0].Name,
			Created: time.Now(), LastSeen: time.Now()})
	}
	if _, err := first.SaveSnapshot(filepath.Join(dir, "pins.json")); err != nil {
		t.Fatal(err)
	}
	var log syncBuf
	second := start(t, strings.Replace(src, "%d", "10", 1), &log)
	if n := second.Table("cas").Len(); n != 10 {
		t.Fatalf("%d pins held, want 10", n)
	}
	if !strings.Contains(log.String(), "restored=10 dropped=40") {
		t.Fatalf("restore log does not say 10 kept and 40 dropped:\n%s", log.String())
	}
}
