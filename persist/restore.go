package persist

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// maxSnapshotSize bounds what a restore reads: 1 GiB holds about ten
// million pins, more than max_entries allows a pool sensibly; a larger
// file is not one stickylb wrote.
const maxSnapshotSize = 1 << 30

// Restore puts back the snapshot file's pins, if there is one, then
// replays the journal of changes made since, and logs what it kept.
func (st *Store) Restore(tables []affinity.Pins) {
	if st.path == "" {
		return
	}
	restored, dropped, err := st.Load(st.path, tables)
	if err != nil {
		st.log.Warn("pin snapshot ignored", "error", err)
	}
	applied, bad, jerr := replay(st.journal.path, tables)
	if jerr != nil {
		st.log.Warn("pin journal ignored", "error", jerr)
	}
	if bad > 0 {
		st.log.Warn("pin journal: unreadable lines skipped (a crash can leave the last one half written)", "file", st.journal.path, "lines", bad)
	}
	held := 0
	for _, t := range tables {
		if t.Table != nil {
			held += t.Table.Len()
		}
	}
	st.log.Info("pins restored", "file", st.path, "restored", restored, "dropped", dropped, "journal_records", applied, "pins", held)
}

// Load restores pins from path into the tables and returns how many it
// kept and how many it dropped: pins that expired while stickylb was
// down, of pools or backends no longer in the config, of pools whose
// affinity key changed, or that a full table could not take. Times in
// the future are taken as now. A missing file is not an error (0, 0); a
// file that is not a regular file, is larger than maxSnapshotSize,
// unreadable, corrupt or foreign is an error and changes nothing, and a
// regular one is moved aside as PATH.corrupt-TIMESTAMP so the next save
// does not destroy what an operator may want to look at.
func (st *Store) Load(path string, tables []affinity.Pins) (restored, dropped int, err error) {
	snap, err := readSnapshot(path)
	if err != nil || snap == nil {
		return 0, 0, err
	}
	now := time.Now()
	byName := map[string]affinity.Pins{}
	for _, t := range tables {
		byName[t.Name] = t
	}
	for name, sp := range snap.Pools {
		t, ok := byName[name]
		if !ok || t.Table == nil || sp.Key != t.Keyer.Kind.String() || sp.V4 != t.Keyer.V4Prefix || sp.V6 != t.Keyer.V6Prefix {
			dropped += len(sp.Pins)
			continue
		}
		for _, pin := range sp.Pins {
			if restoreRecord(t, pin, now, false) {
				restored++
			} else {
				dropped++
			}
		}
	}
	return restored, dropped, nil
}

// readSnapshot reads and checks the snapshot at path; nil, nil when there
// is none.
func readSnapshot(path string) (*snapshot, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pin snapshot %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("pin snapshot %s is not a regular file (%s): starting with empty tables; point global.snapshot_file at a file", path, fi.Mode().Type())
	}
	if fi.Size() > maxSnapshotSize {
		return nil, fmt.Errorf("pin snapshot %s is %d bytes, more than the %d a snapshot may be; %s", path, fi.Size(), maxSnapshotSize, moveAside(path))
	}
	b, err := readAtMost(path, maxSnapshotSize)
	if err != nil {
		return nil, fmt.Errorf("read pin snapshot %s: %w; %s", path, err, moveAside(path))
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("pin snapshot %s is corrupt (%v); %s", path, err, moveAside(path))
	}
	if snap.Magic != snapshotMagic || snap.Version != 1 {
		return nil, fmt.Errorf("%s is not a stickylb pin snapshot (magic %q, version %d); %s", path, snap.Magic, snap.Version, moveAside(path))
	}
	return &snap, nil
}

func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// moveAside renames a snapshot that could not be used out of the way of
// the next save, and says where it went, for the log.
func moveAside(path string) string {
	aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return fmt.Sprintf("starting with empty tables; could not move it aside: %v", err)
	}
	return "moved aside to " + aside + "; starting with empty tables"
}
