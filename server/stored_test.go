//go:build linux

package server

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// recordOf returns client k's pin in tb as a record (with its home).
func recordOf(tb *affinity.Table, k affinity.Key) (affinity.Record, bool) {
	var out affinity.Record
	found := false
	tb.Records(func(r affinity.Record) bool {
		if r.Key == k && r.Backend != "" {
			out, found = r, true
			return false
		}
		return true
	})
	return out, found
}

// A restart keeps everything a pin is, whether it comes back from the
// journal alone (a crash before any snapshot) or from the snapshot: the
// pin's age, and the home a moved client fails back to. A client pinned
// an hour ago to cas1, moved to cas2 while cas1 was down, comes back
// pinned to cas2, an hour old, with cas1 as its home; once cas1 is up
// again its next connection fails back to cas1.
func TestRestartKeepsAgeAndHome(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts[:2], 1)
	dir, crash := t.TempDir(), t.TempDir()
	src := func(d string) string {
		return "[global]\nsnapshot_file = \"" + filepath.Join(d, "pins.json") + "\"\nsnapshot_interval = \"1h\"\njournal_interval = \"10ms\"\n" +
			listenersTOML(ports, "127.0.0.1") + "[pool.cas]\nfailback = true\n[pool.cas.health]\nenabled = false\n" + backendsTOML(bs)
	}
	first := start(t, src(dir), &lbtest.Buffer{})
	client := "127.5.0.1"
	k := affinity.Keyer{}.Key(netip.AddrPortFrom(netip.MustParseAddr(client), 0))
	created := time.Now().Add(-time.Hour).Unix()
	first.Table("cas").Insert(affinity.Record{Key: k, Backend: "cas1", Created: created, LastSeen: time.Now().Unix() - 60})
	first.Pool("cas").Backend("cas1").MarkDown("test")
	addr := first.Listeners()[0].Addr
	if who, err := lbtest.Who(client, addr); err != nil || who != "cas2" {
		t.Fatalf("with cas1 down the client reached %q, %v", who, err)
	}
	journal := filepath.Join(dir, "pins.json.journal")
	lbtest.Eventually(t, 5*time.Second, "the re-pin in the journal", func() bool {
		b, _ := os.ReadFile(journal)
		return strings.Contains(string(b), `"backend":"cas2"`)
	})
	// The crash image: the journal as it is now, no snapshot.
	b, _ := os.ReadFile(journal)
	os.WriteFile(filepath.Join(crash, "pins.json.journal"), b, 0o600)

	check := func(how string, srv *Server) {
		t.Helper()
		r, ok := recordOf(srv.Table("cas"), k)
		if !ok || r.Backend != "cas2" || r.Home != "cas1" || r.Created != created {
			t.Fatalf("after a restart from the %s: pin %+v (found %v), want cas2 with home cas1 created %d", how, r, ok, created)
		}
		if who, err := lbtest.Who(client, srv.Listeners()[0].Addr); err != nil || who != "cas1" {
			t.Fatalf("after a restart from the %s, with cas1 up, the client reached %q, %v; want a failback to cas1", how, who, err)
		}
	}
	check("journal", start(t, src(crash), &lbtest.Buffer{}))
	first.Pool("cas").Backend("cas1").MarkUp()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first.Shutdown(ctx) // writes the snapshot
	check("snapshot", start(t, src(dir), &lbtest.Buffer{}))
}
