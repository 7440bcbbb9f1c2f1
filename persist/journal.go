package persist

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// The journal makes pins crash-safe between snapshots. Every pin, re-pin
// and unpin is noted in memory on the connection path (a map write under
// a mutex, no I/O); every journal_interval the notes are appended to
// SNAPSHOT.journal as JSON lines and fsynced, off the connection path. A
// SIGKILL or a power cut so loses at most the changes of the last
// interval. Each record is a client's whole state (pinned to a backend,
// or unpinned), so replaying them in order over the snapshot restores
// the table, and replaying one twice does no harm. After each snapshot
// the records it holds are cut from the journal.
type journal struct {
	path string

	mu      sync.Mutex // guards pending and the file's contents
	pending map[journalKey]noted
	order   []journalKey // first-noted order, so replay keeps it
	seq     uint64       // counts notes, so a snapshot knows which it holds
}

// noted is a pending record and the note that made it.
type noted struct {
	rec recordJSON
	seq uint64
}

type journalKey struct {
	pool string
	key  affinity.Key
}

func newJournal(path string) *journal {
	return &journal{path: path, pending: map[journalKey]noted{}}
}

// note records a table change; it is called from connection goroutines.
func (j *journal) note(pool string, ev affinity.Event) {
	rec, ok := ev.Record()
	if !ok {
		return // no pin changed
	}
	rec.LastSeen = time.Now().Unix() // the change is the pin's last activity
	r := jsonOf(pool, rec)
	k := journalKey{pool, ev.Key}
	j.mu.Lock()
	if _, ok := j.pending[k]; !ok {
		j.order = append(j.order, k)
	}
	j.seq++
	j.pending[k] = noted{r, j.seq}
	j.mu.Unlock()
}

// flush appends the pending records to the file and syncs it. It returns
// the file's size afterwards, which a snapshot taken next covers; after a
// failed append, the size it was cut back to (-1 when not known).
func (j *journal) flush() (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, k := range j.order {
		enc.Encode(j.pending[k].rec)
	}
	// O_NOFOLLOW: a symlink planted at the journal's path cannot make
	// stickylb append to another file (the snapshot is renamed into
	// place, which replaces a link rather than following it).
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return -1, fmt.Errorf("pin journal %s: %w", j.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return -1, fmt.Errorf("pin journal %s: %w", j.path, err)
	}
	if buf.Len() == 0 {
		return fi.Size(), nil
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		// A full disk can take part of the append: cut it back, so the
		// next append does not start mid-line and spoil its first record.
		if f.Truncate(fi.Size()) != nil {
			return -1, fmt.Errorf("pin journal %s: %w", j.path, err)
		}
		return fi.Size(), fmt.Errorf("pin journal %s: %w", j.path, err)
	}
	clear(j.pending)
	j.order = j.order[:0]
	return fi.Size() + int64(buf.Len()), nil
}

// mark is the last note made: a snapshot whose table is read after it
// holds every change noted up to it.
func (j *journal) mark() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq
}

// drop forgets the pending records noted up to mark, which a snapshot
// written since holds: they need no append (with the disk full, they
// could not have one).
func (j *journal) drop(mark uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	keep := j.order[:0]
	for _, k := range j.order {
		if j.pending[k].seq <= mark {
			delete(j.pending, k)
		} else {
			keep = append(keep, k)
		}
	}
	j.order = keep
}

// cut drops the first n bytes of the journal, which a snapshot now holds,
// keeping what was appended since, and replaces the file atomically.
func (j *journal) cut(n int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.OpenFile(j.path, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pin journal %s: %w", j.path, err)
	}
	defer f.Close()
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		return fmt.Errorf("pin journal %s: %w", j.path, err)
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("pin journal %s: %w", j.path, err)
	}
	return writeAtomic(j.path, rest)
}

// replay applies the journal at path to the tables and returns how many
// records it applied and how many lines it could not read (a crash can
// leave the last one half written).
func replay(path string, tables []affinity.Pins) (applied, bad int, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("pin journal %s: %w", path, err)
	}
	defer f.Close()
	byName := map[string]affinity.Pins{}
	for _, t := range tables {
		byName[t.Name] = t
	}
	now := time.Now()
	return readJournal(f, func(r recordJSON) bool {
		p, ok := byName[r.Pool]
		return ok && restoreRecord(p, r, now, true)
	})
}

// maxJournalLine bounds one record; real ones are under 200 bytes.
const maxJournalLine = 4096

// readJournal calls apply for each record of r and returns how many it
// accepted and how many lines it could not read.
func readJournal(r io.Reader, apply func(recordJSON) bool) (applied, bad int, err error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxSnapshotSize))
	sc.Buffer(make([]byte, 0, 512), maxJournalLine)
	for sc.Scan() {
		var rec recordJSON
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Pool == "" || rec.Client == "" {
			bad++
			continue
		}
		if apply(rec) {
			applied++
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return applied, bad + 1, nil
	}
	return applied, bad, sc.Err()
}
