package persist

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// The snapshot is JSON: readable with jq when an operator wants to know
// where a client was pinned before a restart.
const snapshotMagic = "stickylb-pins"

type snapshot struct {
	Magic   string                  `json:"magic"`
	Version int                     `json:"version"`
	Written time.Time               `json:"written"`
	Pools   map[string]snapshotPool `json:"pools"`
}

type snapshotPool struct {
	Key  string       `json:"key"`
	V4   int          `json:"ipv4_prefix"`
	V6   int          `json:"ipv6_prefix"`
	Pins []recordJSON `json:"pins"`
}

// Save writes every table's pins to path atomically: a reader sees the
// old file or the new one, never half of one. Pins with connections open
// count as seen now. Saved to the store's own snapshot file, it also
// compacts the journal, and a full disk gets the newest pins that fit
// (room.go); the state of that file is logged once per change.
func (st *Store) Save(path string, tables []affinity.Pins) (int, error) {
	own := path == st.path
	if own && st.paused.Load() {
		return 0, nil // another process keeps the pins now
	}
	// The journal's records up to here are in the table the snapshot is
	// taken from; once it is written they are cut from the journal.
	var covered int64 = -1
	var mark uint64
	if own && st.journal != nil {
		covered, _ = st.flush()
		mark = st.journal.mark()
	}
	now := time.Now()
	snap, n := collect(tables, now)
	b, err := json.Marshal(snap)
	if err != nil {
		return 0, err
	}
	kept := n
	err = writeAtomic(path, b)
	if own && NoRoom(err) {
		kept, err = st.saveInRoom(snap, b, n, covered)
		covered = -1 // cut already, where it could be
	}
	if err != nil {
		st.stats.SnapshotFailures.Add(1)
		err = fmt.Errorf("write pin snapshot %s: %w", path, err)
		if own {
			st.snapState.set(st.log, failure(err), "pin snapshot failed; pins since the last one are in the journal while it has room", "error", err)
		}
		return 0, err
	}
	st.stats.SnapshotSaves.Add(1)
	st.stats.LastSnapshot.Store(now.Unix())
	if !own {
		return n, nil
	}
	st.stats.LeftOut.Store(int64(n - kept))
	if kept < n {
		st.snapState.set(st.log, "partial", "disk full: the pin snapshot holds only the newest pins that fit", "file", path, "kept", kept, "pins", n)
	} else {
		st.snapState.set(st.log, "", "pin snapshot written again", "file", path, "pins", n)
	}
	if st.journal != nil && kept == n {
		st.journal.drop(mark)
	}
	if covered >= 0 {
		if err := st.journal.cut(covered); err != nil {
			st.stats.JournalFailures.Add(1)
			st.journalState.set(st.log, failure(err), "pin journal not compacted; it will be replayed over the snapshot, which is harmless", "error", err)
		}
	}
	if err := st.keepReserve(reserveSize(len(b))); err != nil {
		st.reserveState.set(st.log, "short", "no room for the pin snapshot's reserve: a full disk may leave older pins out of the next snapshot", "error", err)
	} else {
		st.reserveState.set(st.log, "", "pin snapshot reserve held again", "file", FilesOf(st.path).Reserve)
	}
	return kept, nil
}

// collect is every table's pins as a snapshot taken at now, and how many
// there are.
func collect(tables []affinity.Pins, now time.Time) (snapshot, int) {
	snap := snapshot{Magic: snapshotMagic, Version: 1, Written: now.UTC(), Pools: map[string]snapshotPool{}}
	n := 0
	for _, t := range tables {
		if t.Table == nil {
			continue
		}
		sp := snapshotPool{Key: t.Keyer.Kind.String(), V4: t.Keyer.V4Prefix, V6: t.Keyer.V6Prefix}
		t.Table.Records(func(r affinity.Record) bool {
			switch {
			case r.Backend == "":
				return true // an unpin: a snapshot holds pins only
			case r.Active > 0:
				r.LastSeen = now.Unix()
			case r.LastSeen == 0:
				r.LastSeen = r.Created
			}
			sp.Pins = append(sp.Pins, jsonOf("", r))
			return true
		})
		n += len(sp.Pins)
		snap.Pools[t.Name] = sp
	}
	return snap, n
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".stickylb-pins-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
