package persist

import "os"

// Files names the files that one snapshot path stands for. Package
// persist writes the first three; the operators' decisions are written
// by package operator, beside them, so that one folder holds all a
// restart needs. Other packages ask here instead of spelling the
// suffixes themselves.
type Files struct {
	Snapshot string // the pins, whole (snapshot.go)
	Journal  string // pin changes since the snapshot (journal.go)
	Reserve  string // room kept for the next snapshot (room.go)
	Operator string // the operators' decisions (package operator)
}

// FilesOf returns the files of the snapshot at path; all "" for "".
func FilesOf(path string) Files {
	if path == "" {
		return Files{}
	}
	return Files{Snapshot: path, Journal: path + ".journal", Reserve: path + ".reserve", Operator: path + ".operator"}
}

// BytesPerPin is what a pin takes in the snapshot: about 115 bytes for an
// IPv4 client (TestSnapshotBytesPerPin), rounded up for IPv6 clients.
const BytesPerPin = 130

// RoomFor is the disk room full tables of pins need: the snapshot, the
// next one while it is written, and the reserve a quarter larger
// (room.go).
func RoomFor(pins int) uint64 { return uint64(pins) * BytesPerPin * 13 / 4 }

// Used is the room the snapshot's files take now, which a new snapshot
// may count as free: it replaces them.
func (f Files) Used() uint64 {
	var n uint64
	for _, p := range []string{f.Snapshot, f.Reserve, f.Journal} {
		if fi, err := os.Stat(p); err == nil {
			n += uint64(fi.Size())
		}
	}
	return n
}

// WriteAtomic writes b to path so that a crash leaves the old file or
// the new one whole: a temporary file in the same folder, fsynced, then
// renamed over path, and the folder fsynced.
func WriteAtomic(path string, b []byte) error { return writeAtomic(path, b) }

// OpenNoFollow opens path for reading, and fails on a symbolic link: a
// link planted in the state folder must not make stickylb read another
// file as its own.
func OpenNoFollow(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDONLY|noFollow, 0) }
