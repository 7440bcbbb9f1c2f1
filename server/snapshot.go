//go:build linux

package server

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

// SaveSnapshot writes every pool's pins to path atomically: a reader sees
// the old file or the new one, never half of one. Pins with connections
// open count as seen now. Saved to the server's own snapshot file, it
// also compacts the journal.
func (s *Server) SaveSnapshot(path string) (int, error) {
	// The journal's records up to here are in the table the snapshot is
	// taken from; once it is written they are cut from the journal.
	var covered int64 = -1
	if path == s.snapPath && s.journal != nil {
		n, err := s.journal.flush()
		if err != nil {
			s.JournalFailures.Add(1)
			s.log.Error("pin journal write failed", "error", err)
		} else {
			covered = n
		}
	}
	now := time.Now()
	snap := snapshot{Magic: snapshotMagic, Version: 1, Written: now.UTC(), Pools: map[string]snapshotPool{}}
	n := 0
	for _, p := range s.Pools() {
		if p.Table == nil {
			continue
		}
		sp := snapshotPool{Key: p.Keyer.Kind.String(), V4: p.Keyer.V4Prefix, V6: p.Keyer.V6Prefix}
		p.Table.Records(func(r affinity.Record) bool {
			switch {
			case r.Backend == "":
				return true // an unpin: a snapshot holds pins only
			case r.Open > 0:
				r.Last = now.Unix()
			case r.Last == 0:
				r.Last = r.Created
			}
			sp.Pins = append(sp.Pins, storedOf("", r))
			return true
		})
		n += len(sp.Pins)
		snap.Pools[p.Name] = sp
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return 0, err
	}
	if err := writeAtomic(path, b); err != nil {
		s.SnapshotFailures.Add(1)
		return 0, fmt.Errorf("write pin snapshot %s: %w", path, err)
	}
	s.SnapshotSaves.Add(1)
	s.LastSnapshot.Store(now.Unix())
	if covered >= 0 {
		if err := s.journal.cut(covered); err != nil {
			s.JournalFailures.Add(1)
			s.log.Error("pin journal not compacted; it will be replayed over the snapshot, which is harmless", "error", err)
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

// savePins writes the snapshot file, if one is configured, and logs it.
func (s *Server) savePins() {
	if s.snapPath == "" {
		return
	}
	if n, err := s.SaveSnapshot(s.snapPath); err != nil {
		s.log.Error("pin snapshot failed", "error", err)
	} else {
		s.log.Info("pins saved", "file", s.snapPath, "pins", n)
	}
}

// snapshots saves the pins every snapshot_interval and appends pin
// changes to the journal every journal_interval while the server runs.
func (s *Server) snapshots() {
	defer s.bg.Done()
	if s.snapPath == "" {
		return
	}
	g := s.Config().Global
	snap := time.NewTicker(g.SnapshotInterval.Duration)
	defer snap.Stop()
	flush := time.NewTicker(g.JournalInterval.Duration)
	defer flush.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-flush.C:
			if _, err := s.journal.flush(); err != nil {
				s.JournalFailures.Add(1)
				s.journalLog.Do(func(n int) {
					s.log.Error("pin journal write failed", "error", err, "count", n, "note", s.journalLog.Note())
				})
			}
		case <-snap.C:
			if _, err := s.SaveSnapshot(s.snapPath); err != nil {
				s.log.Error("pin snapshot failed", "error", err)
			}
		}
		if g2 := s.Config().Global; g2.SnapshotInterval != g.SnapshotInterval || g2.JournalInterval != g.JournalInterval {
			g = g2
			snap.Reset(g.SnapshotInterval.Duration)
			flush.Reset(g.JournalInterval.Duration)
		}
	}
}
