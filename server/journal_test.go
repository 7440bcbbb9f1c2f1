//go:build linux

package server

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
)

func pinThrough(t *testing.T, tb *affinity.Table, client, backend string) {
	t.Helper()
	l, err := tb.Acquire(affinity.Keyer{}.Key(netip.MustParseAddrPort(client+":1")), func(affinity.Current) (string, affinity.RepinReason, error) {
		return backend, "", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
}

// Pin changes reach the journal on flush; a snapshot then cuts what it
// holds, and a restart replays snapshot and journal to the same table.
func TestJournalFlushCompactReplay(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	src := "[global]\nsnapshot_file = \"" + path + "\"\n" + listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n" + backendsTOML(bs)
	srv := start(t, src, &syncBuf{})
	tb := srv.Table("cas")
	pinThrough(t, tb, "10.0.0.1", "cas1")
	pinThrough(t, tb, "10.0.0.2", "cas2")
	if srv.store.Flush(); srv.JournalFailures.Load() != 0 {
		t.Fatal("journal flush failed")
	}
	if b, _ := os.ReadFile(path + ".journal"); bytes.Count(b, []byte("\n")) != 2 {
		t.Fatalf("journal after flush:\n%s", b)
	}
	if _, err := srv.SaveSnapshot(path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + ".journal"); err != nil || fi.Size() != 0 {
		t.Fatalf("journal not cut by the snapshot: %v %v", fi, err)
	}
	pinThrough(t, tb, "10.0.0.3", "cas3")
	tb.Delete(func(in affinity.Info) bool { return in.Key.String() == "10.0.0.1" })
	if srv.store.Flush(); srv.JournalFailures.Load() != 0 {
		t.Fatal("journal flush failed")
	}
	stamps := func(tb *affinity.Table) map[string]uint64 {
		out := map[string]uint64{}
		tb.Range(func(in affinity.Info) bool { out[in.Key.String()] = in.Version; return true })
		return out
	}
	before := stamps(tb)
	// A second server on the same files sees the snapshot and the journal,
	// each pin with the stamp of its decision, which a cluster compares.
	var log syncBuf
	other := start(t, src, &log)
	got := map[string]string{}
	other.Table("cas").Range(func(in affinity.Info) bool { got[in.Key.String()] = in.Backend; return true })
	if fmt.Sprint(got) != "map[10.0.0.2:cas2 10.0.0.3:cas3]" {
		t.Fatalf("restored %v\n%s", got, log.String())
	}
	if after := stamps(other.Table("cas")); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("stamps after the restart %v; before %v", after, before)
	}
}

// Replay skips what does not fit: a half-written last line, unknown
// pools and backends, keys of another kind, and expired records.
func TestJournalReplaySkipsWhatDoesNotFit(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts[:1], 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	now := time.Now().Unix()
	lines := []string{
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.1","backend":"cas1","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.2","backend":"nope","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"other","client":"10.0.0.3","backend":"cas1","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.0/24","backend":"cas1","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.5","backend":"cas1","created":%d,"at":%d}`, now-86400, now-86400),
		`{"pool":"cas","client":"10.0.0.6","backe`,
	}
	os.WriteFile(path+".journal", []byte(strings.Join(lines, "\n")), 0o600)
	src := "[global]\nsnapshot_file = \"" + path + "\"\n" + listenersTOML(ports, "127.0.0.1") + "[pool.cas.health]\nenabled = false\n" + backendsTOML(bs)
	var log syncBuf
	srv := start(t, src, &log)
	if n := srv.Table("cas").Len(); n != 1 {
		t.Fatalf("%d pins restored, want 1", n)
	}
	if !strings.Contains(log.String(), "journal_records=1") || !strings.Contains(log.String(), "lines=1") {
		t.Fatalf("log does not count 1 record applied and 1 bad line:\n%s", log.String())
	}
}
