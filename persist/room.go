package persist

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"syscall"
)

// With the disk full a snapshot cannot be written beside the old one, so
// the journal is never cut and grows into what space is left; after a
// crash only the old snapshot and the journal's first part would come
// back. Two things keep the newest pins on disk instead:
//
//   - SNAPSHOT.reserve, a file allocated after each snapshot a quarter
//     larger than it. When a snapshot meets a full disk the reserve is
//     deleted and the snapshot written into its room, which cuts the
//     journal and so frees space again: compaction keeps working.
//   - When even that room is too small, the snapshot holds the newest
//     pins (last seen first) that fit, halving until one fits; the
//     journal is then cut, and the whole snapshot is tried at once in
//     the room the old snapshot and the journal held.
//
// A journal append that fails leaves no half line behind: the file is cut
// back to where the append started, and its records stay pending.

// NoRoom says whether err is a full disk or an exhausted quota.
func NoRoom(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// reserveSize is the room kept for a snapshot of size n.
func reserveSize(n int) int64 { return int64(n) + int64(n)/4 + 64<<10 }

// keepReserve grows the reserve file to size; a failure (no room) leaves
// what it made, which still helps.
func (st *Store) keepReserve(size int64) error {
	path := FilesOf(st.path).Reserve
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return fmt.Errorf("pin snapshot reserve %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() >= size {
		return err
	}
	if err := allocate(f, fi.Size(), size); err != nil {
		return fmt.Errorf("pin snapshot reserve %s: %w", path, err)
	}
	return f.Sync()
}

// saveInRoom writes the snapshot snap (b marshalled, n pins) to the
// store's path after a full disk refused it: into the reserve's room,
// or else the newest pins that fit. It returns how many pins the file
// holds and cuts the journal up to covered.
func (st *Store) saveInRoom(snap snapshot, b []byte, n int, covered int64) (int, error) {
	os.Remove(FilesOf(st.path).Reserve)
	err := writeAtomic(st.path, b)
	if err == nil {
		return n, nil
	}
	if !NoRoom(err) {
		return 0, err
	}
	kept, err := st.saveNewest(snap, n)
	if err != nil {
		return 0, err
	}
	// The file holds the newest pins; the journal's records are in the
	// table. Cutting it frees its room for the whole snapshot.
	if covered >= 0 {
		if err := st.journal.cut(covered); err != nil {
			return kept, err
		}
	}
	if err := writeAtomic(st.path, b); err != nil {
		return kept, nil
	}
	return n, nil
}

// saveNewest writes the newest pins of snap that fit, halving the count
// from half of n until a snapshot fits, and returns how many it holds.
func (st *Store) saveNewest(snap snapshot, n int) (int, error) {
	type ref struct {
		pool string
		pin  recordJSON
	}
	all := make([]ref, 0, n)
	for name, sp := range snap.Pools {
		for _, p := range sp.Pins {
			all = append(all, ref{name, p})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].pin.LastSeen > all[j].pin.LastSeen })
	for k := n / 2; ; k /= 2 {
		part := snap
		part.Pools = map[string]snapshotPool{}
		for name, sp := range snap.Pools {
			sp.Pins = nil
			part.Pools[name] = sp
		}
		for _, r := range all[:k] {
			sp := part.Pools[r.pool]
			sp.Pins = append(sp.Pins, r.pin)
			part.Pools[r.pool] = sp
		}
		b, err := json.Marshal(part)
		if err != nil {
			return 0, err
		}
		err = writeAtomic(st.path, b)
		if err == nil || !NoRoom(err) || k == 0 {
			return k, err
		}
	}
}

// failure is the state a failed write puts its file in: its errno, so
// that failures that differ only in a temporary file's name are one
// state and are logged once.
func failure(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "failed"
}

// fileState is the state of one pin file, logged once per change rather
// than on every failed write.
type fileState struct {
	mu    sync.Mutex
	state string // "" while its writes succeed
}

// set moves to state (""=fine) and logs the change, if it is one: an
// error when writes start failing or fail differently, info when they
// succeed again.
func (s *fileState) set(log *slog.Logger, state, msg string, args ...any) {
	s.mu.Lock()
	was := s.state
	s.state = state
	s.mu.Unlock()
	switch {
	case state == was:
	case state == "":
		log.Info(msg, append(args, "was", was)...)
	default:
		log.Error(msg, args...)
	}
}
