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
	Key  string      `json:"key"`
	V4   int         `json:"ipv4_prefix"`
	V6   int         `json:"ipv6_prefix"`
	Pins []storedPin `json:"pins"`
}

// Save writes every table's pins to path atomically: a reader sees the
// old file or the new one, never half of one. Pins with connections open
// count as seen now. Saved to the store's own snapshot file, it also
// compacts the journal.
func (st *Store) Save(path string, tables []Table) (int, error) {
	if path == st.path && st.paused.Load() {
		return 0, nil // another process keeps the pins now
	}
	// The journal's records up to here are in the table the snapshot is
	// taken from; once it is written they are cut from the journal.
	var covered int64 = -1
	if path == st.path && st.journal != nil {
		n, err := st.journal.flush()
		if err != nil {
			st.stats.JournalFailures.Add(1)
			st.log.Error("pin journal write failed", "error", err)
		} else {
			covered = n
		}
	}
	now := time.Now()
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
			sp.Pins = append(sp.Pins, storedOf("", r))
			return true
		})
		n += len(sp.Pins)
		snap.Pools[t.Name] = sp
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return 0, err
	}
	if err := writeAtomic(path, b); err != nil {
		st.stats.SnapshotFailures.Add(1)
		return 0, fmt.Errorf("write pin snapshot %s: %w", path, err)
	}
	st.stats.SnapshotSaves.Add(1)
	st.stats.LastSnapshot.Store(now.Unix())
	if covered >= 0 {
		if err := st.journal.cut(covered); err != nil {
			st.stats.JournalFailures.Add(1)
			st.log.Error("pin journal not compacted; it will be replayed over the snapshot, which is harmless", "error", err)
		}
	}
	return n, nil
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
