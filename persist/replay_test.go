//go:build linux

package persist

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// keyed lists a table's pins as client: backend, and their stamps.
func keyed(tb *affinity.Table) (backends map[string]string, stamps map[string]uint64) {
	backends, stamps = map[string]string{}, map[string]uint64{}
	tb.Records(func(r affinity.Record) bool {
		if r.Backend != "" {
			backends[r.Key.String()], stamps[r.Key.String()] = r.Backend, r.Version
		}
		return true
	})
	return backends, stamps
}

// Pin changes reach the journal on flush; a snapshot then cuts what it
// holds, and a restart replays snapshot and journal to the same table,
// each pin with the stamp of its decision, which a cluster compares.
func TestJournalFlushCompactReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	ps := newPinStore(t, path)
	ps.pin(t, 1, 3, "cas1")
	if err := ps.st.Flush(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(FilesOf(path).Journal); bytes.Count(b, []byte("\n")) != 2 {
		t.Fatalf("journal after flush:\n%s", b)
	}
	if _, err := ps.st.Save(path, ps.tables()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(FilesOf(path).Journal); err != nil || fi.Size() != 0 {
		t.Fatalf("journal not cut by the snapshot: %v %v", fi, err)
	}
	ps.pin(t, 3, 4, "cas3")
	ps.tb.Delete(func(in affinity.Record) bool { return in.Key == client(1) })
	if err := ps.st.Flush(); err != nil {
		t.Fatal(err)
	}
	want, wantStamps := keyed(ps.tb)
	again := newPinStore(t, path)
	again.st.Restore(again.tables())
	got, gotStamps := keyed(again.tb)
	if fmt.Sprint(got) != "map[10.0.0.2:cas1 10.0.0.3:cas3]" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %v, want %v\n%s", got, want, again.log.String())
	}
	if fmt.Sprint(gotStamps) != fmt.Sprint(wantStamps) {
		t.Fatalf("stamps after the restart %v; before %v", gotStamps, wantStamps)
	}
}

// Replay skips what does not fit: a half-written last line, unknown
// pools and backends, keys of another kind, and expired records; the log
// counts what it applied and the bad lines.
func TestJournalReplaySkipsWhatDoesNotFit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	now := time.Now().Unix()
	lines := []string{
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.1","backend":"cas1","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.2","backend":"nope","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"other","client":"10.0.0.3","backend":"cas1","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.0/24","backend":"cas1","created":%d,"at":%d}`, now, now),
		fmt.Sprintf(`{"pool":"cas","client":"10.0.0.5","backend":"cas1","created":%d,"at":%d}`, now-86400*2, now-86400*2),
		`{"pool":"cas","client":"10.0.0.6","backe`,
	}
	os.WriteFile(FilesOf(path).Journal, []byte(strings.Join(lines, "\n")), 0o600)
	ps := newPinStore(t, path)
	ps.st.Restore([]affinity.Pins{{Name: "cas", Table: ps.tb, Backends: []string{"cas1"}}})
	if n := ps.tb.Len(); n != 1 {
		t.Fatalf("%d pins restored, want 1", n)
	}
	if ps.lines("journal_records=1") != 1 || ps.lines("lines=1") != 1 {
		t.Fatalf("log does not count 1 record applied and 1 bad line:\n%s", ps.log.String())
	}
}
