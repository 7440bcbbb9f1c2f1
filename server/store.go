//go:build linux

package server

import (
	"time"

	"github.com/stickylb/stickylb/affinity"

	"github.com/stickylb/stickylb/persist"
)

// tables are the pools' pins as published.
func (s *Server) tables() []affinity.Pins { return s.pins.All() }

// SaveSnapshot writes every pool's pins to path (package persist); saved
// to the server's own snapshot file, it also compacts the journal.
func (s *Server) SaveSnapshot(path string) (int, error) { return s.store.Save(path, s.tables()) }

// LoadSnapshot restores pins from path into the current tables and
// returns how many it kept and how many it dropped (persist.Store.Load).
func (s *Server) LoadSnapshot(path string) (restored, dropped int, err error) {
	return s.store.Load(path, s.tables())
}

// savePins writes the snapshot file, if one is configured, and logs it.
func (s *Server) savePins() {
	path := s.store.Path()
	if path == "" {
		return
	}
	if n, err := s.SaveSnapshot(path); err != nil {
		s.log.Error("pin snapshot failed", "error", err)
	} else {
		s.log.Info("pins saved", "file", path, "pins", n)
	}
}

// roomEvery spaces the snapshots a full disk asks for: each writes the
// whole table.
const roomEvery = 10 * time.Second

// snapshots saves the pins every snapshot_interval and appends pin
// changes to the journal every journal_interval while the server runs.
// A journal that meets a full disk gets a snapshot at once (at most one
// per roomEvery), which cuts the journal and so makes room (package
// persist's room.go). The store logs failures once per change.
func (s *Server) snapshots() {
	defer s.bg.Done()
	path := s.store.Path()
	if path == "" {
		return
	}
	g := s.Config().Global
	snap := time.NewTicker(g.SnapshotInterval.Duration)
	defer snap.Stop()
	flush := time.NewTicker(g.JournalInterval.Duration)
	defer flush.Stop()
	var early time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-flush.C:
			if err := s.store.Flush(); persist.NoRoom(err) && time.Since(early) >= roomEvery {
				early = time.Now()
				s.SaveSnapshot(path)
			}
		case <-snap.C:
			s.SaveSnapshot(path)
		}
		if g2 := s.Config().Global; g2.SnapshotInterval != g.SnapshotInterval || g2.JournalInterval != g.JournalInterval {
			g = g2
			snap.Reset(g.SnapshotInterval.Duration)
			flush.Reset(g.JournalInterval.Duration)
		}
	}
}
