// Package persist keeps the affinity tables on disk, so that a restart,
// even a kill -9, moves no client. A JSON snapshot of every table is
// written atomically every snapshot_interval (readable with jq), and the
// pin changes since are noted in memory on the connection path and
// appended to a journal beside it, fsynced every journal_interval, off
// the connection path: a crash loses at most one interval. Both write a
// pin in one form, holding everything a pin is (backend, failback home,
// age, last close, decision stamp), and read pins back by the one rule a
// cluster member also applies (affinity.Keyer.Admit).
//
// The files: store.go is the Store, stored.go the one form of a pin,
// snapshot.go writes snapshots, journal.go keeps the journal, room.go
// keeps them written on a full disk and restore.go reads both back at
// start.
package persist

import (
	"log/slog"
	"sync/atomic"

	"github.com/stickylb/stickylb/affinity"
)

// Stats are the store's counters, for metrics.
type Stats struct {
	// SnapshotSaves and SnapshotFailures count snapshot writes;
	// LastSnapshot is the unix time of the last one that succeeded.
	SnapshotSaves, SnapshotFailures atomic.Uint64
	LastSnapshot                    atomic.Int64
	JournalFailures                 atomic.Uint64 // failed journal appends or compactions
	// LeftOut is how many pins the last snapshot could not hold for
	// lack of disk (room.go); 0 when it holds them all.
	LeftOut atomic.Int64
}

// Store is a snapshot file and its journal (PATH.journal).
type Store struct {
	path    string // "" keeps nothing on disk
	journal *journal
	log     *slog.Logger
	stats   *Stats
	// The state of each file, logged once per change.
	journalState, snapState, reserveState fileState
	// paused: the files belong to a process that took over from this
	// one (a binary upgrade); nothing is noted or written until Resume.
	paused atomic.Bool
}

// Pause stops every write to the snapshot and journal, for a process
// that takes them over; Resume undoes it when the hand-over fails.
func (st *Store) Pause()  { st.paused.Store(true) }
func (st *Store) Resume() { st.paused.Store(false) }

// Paused says whether another process keeps the files now.
func (st *Store) Paused() bool { return st.paused.Load() }

// New makes the store of the snapshot file path ("" for none), counting
// into stats.
func New(path string, stats *Stats, log *slog.Logger) *Store {
	st := &Store{path: path, log: log, stats: stats}
	if path != "" {
		st.journal = newJournal(FilesOf(path).Journal)
	}
	return st
}

// Path is the snapshot file; "" for none.
func (st *Store) Path() string { return st.path }

// Note records a table change for the journal; it is called from
// connection goroutines and does no I/O.
func (st *Store) Note(pool string, ev affinity.Event) {
	if st.journal != nil && !st.paused.Load() {
		st.journal.note(pool, ev)
	}
}

// Flush appends the changes noted since the last flush to the journal
// and syncs it. A failure is counted and logged when the journal's state
// changes; the changes stay pending for the next flush. NoRoom(err)
// says the disk is full, which a snapshot (Save) can make room for.
func (st *Store) Flush() error {
	if st.journal == nil || st.paused.Load() {
		return nil
	}
	_, err := st.flush()
	return err
}

// flush is Flush returning the journal's size, which a snapshot taken
// next covers, even when the append failed (-1 when it is not known).
func (st *Store) flush() (int64, error) {
	n, err := st.journal.flush()
	if err != nil {
		st.stats.JournalFailures.Add(1)
		st.journalState.set(st.log, failure(err), "pin journal write failed; pin changes are kept in memory until it succeeds", "error", err)
		return n, err
	}
	st.journalState.set(st.log, "", "pin journal written again", "file", st.journal.path)
	return n, nil
}
