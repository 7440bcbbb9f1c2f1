package cluster

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/stickylb/stickylb/operator"

	"github.com/stickylb/stickylb/affinity"
)

// The messages members exchange. Each starts with a version byte, so a
// member of a later release can tell an older one's messages apart during
// a rolling upgrade, and a kind byte: a batch of changes, sent as they
// happen, or a whole table, sent when two members synchronise (memberlist's
// push/pull). A whole table is compressed: at a million pins it has to fit
// memberlist's 20 MB bound on state.
//
// The body: the encoding time (unix seconds, the sender's clock), a
// string table (the sender's name, marked by a leading 0 byte that no
// pool or backend name has, then pool and backend names, each sent once
// per message), then the records. A member of an earlier release reads
// the sender's name as a name no record uses. Times are
// sent as differences from the encoding time, and keys in their 8-byte
// binary form, so an IPv4 pin takes about 20 bytes before compression.

const (
	wireVersion = 1
	kindChanges = 'C'
	kindTable   = 'T'
	// kindBye says a member is leaving on purpose (its body is its
	// name): memberlist reports a leave and a failure alike.
	kindBye = 'B'

	maxNames     = 1 << 16
	maxNameLen   = 255
	minRecordLen = 12 // the smallest record: index, flags, key, version
	// maxRecordLen bounds one record: indexes (3 bytes each at most for
	// 65,536 names), flags, a key (IPv6 with a port), a version and three
	// times (10 bytes each as varints).
	maxRecordLen = 3 + 1 + 19 + 3 + 3 + 10 + 10 + 10 + 10
)

// record flags
const (
	flagUnpin = 1 << iota
	flagHome
	flagLast
	flagHeld
)

// entry is a record of one pool.
type entry struct {
	pool string
	rec  affinity.Record
}

var errMessage = errors.New("cluster message malformed")

// header is what a message says of itself: when it was encoded, by the
// sender's clock (unix seconds), and by whom ("" from a member of an
// earlier release); and the operators' decisions about backends it
// carries (operator.Decision, as JSON entries of the string table, marked
// by a leading 1 byte), which a member of an earlier release ignores.
type header struct {
	sent   int64
	from   string
	ops    []operator.Decision
	closes []CloseRequest
}

// CloseRequest asks every member to close the open connections of a
// client, or to a backend, as ctl close does at one (string table
// entries marked by a leading 2 byte).
type CloseRequest struct {
	Pool    string `json:"p,omitempty"`
	Client  string `json:"c,omitempty"`
	Backend string `json:"b,omitempty"`
}

// senderMark starts the string table's entry that names the sender, and
// operatorMark each one that holds an operator's decision.
const (
	senderMark   = "\x00"
	operatorMark = "\x01"
	closeMark    = "\x02"
)

// leftOut is what encode could not carry: a string table entry holds
// at most maxNameLen bytes (a member of an earlier release refuses the
// whole message over one longer) and the table maxNames entries. config
// refuses names that long with a cluster; what comes anyway is left out
// of the message, never sent to sink it, and counted.
type leftOut struct {
	sender                     bool // the sender's name: peers take it for a member of an earlier release
	decisions, closes, records int
	example                    string // the first text left out, for the log
}

func (l leftOut) count() int {
	n := l.decisions + l.closes + l.records
	if l.sender {
		n++
	}
	return n
}

// encode makes a message of kind from entries, stamped h.sent, and says
// what it left out.
func encode(kind byte, h header, entries []entry) ([]byte, leftOut) {
	var out leftOut
	names := map[string]uint64{}
	var order []string
	fits := func(s string) bool {
		if len(s) <= maxNameLen && len(order) < maxNames {
			return true
		}
		if out.example == "" {
			out.example = s
		}
		return false
	}
	if h.from != "" {
		if fits(senderMark + h.from) {
			order = append(order, senderMark+h.from)
		} else {
			out.sender = true
		}
	}
	for _, op := range h.ops {
		if b, err := json.Marshal(op); err == nil && fits(operatorMark+string(b)) {
			order = append(order, operatorMark+string(b))
		} else {
			out.decisions++
		}
	}
	for _, c := range h.closes {
		if b, err := json.Marshal(c); err == nil && fits(closeMark+string(b)) {
			order = append(order, closeMark+string(b))
		} else {
			out.closes++
		}
	}
	recs, n := appendRecords(entries, h.sent, names, &order, fits)
	out.records = len(entries) - n
	body := binary.AppendVarint(nil, h.sent)
	body = binary.AppendUvarint(body, uint64(len(order)))
	for _, s := range order {
		body = binary.AppendUvarint(body, uint64(len(s)))
		body = append(body, s...)
	}
	body = binary.AppendUvarint(body, uint64(n))
	body = append(body, recs...)
	msg := []byte{wireVersion, kind}
	if kind != kindTable {
		return append(msg, body...), out
	}
	var buf bytes.Buffer
	buf.Write(msg)
	zw, _ := flate.NewWriter(&buf, flate.BestSpeed) // only a bad level fails
	zw.Write(body)
	zw.Close()
	return buf.Bytes(), out
}

// appendRecords encodes entries, adding the names they use to the
// string table (order, numbered by names), and returns them with how
// many it took: one naming what does not fit the table is left out
// whole (a name it added meanwhile stays, unused, which readers allow).
func appendRecords(entries []entry, now int64, names map[string]uint64, order *[]string, fits func(string) bool) ([]byte, int) {
	failed := false
	index := func(s string) uint64 {
		i, ok := names[s]
		if !ok {
			if !fits(s) {
				failed = true
				return 0
			}
			i = uint64(len(*order))
			names[s] = i
			*order = append(*order, s)
		}
		return i
	}
	var recs []byte
	n := 0
	for _, e := range entries {
		mark := len(recs)
		if recs = appendRecord(recs, e, now, index); failed {
			recs, failed = recs[:mark], false
			continue
		}
		n++
	}
	return recs, n
}

func appendRecord(b []byte, e entry, now int64, index func(string) uint64) []byte {
	r := e.rec
	var flags byte
	if r.Backend == "" {
		flags |= flagUnpin
	}
	if r.Home != "" && r.Backend != "" {
		flags |= flagHome
	}
	if r.LastSeen != 0 {
		flags |= flagLast
	}
	if r.HeldUntil != 0 {
		flags |= flagHeld
	}
	b = binary.AppendUvarint(b, index(e.pool))
	b = append(b, flags)
	b, _ = r.Key.AppendBinary(b)
	if flags&flagUnpin == 0 {
		b = binary.AppendUvarint(b, index(r.Backend))
	}
	if flags&flagHome != 0 {
		b = binary.AppendUvarint(b, index(r.Home))
	}
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendVarint(b, now-r.Created)
	if flags&flagLast != 0 {
		b = binary.AppendVarint(b, now-r.LastSeen)
	}
	if flags&flagHeld != 0 {
		b = binary.AppendVarint(b, r.HeldUntil-now)
	}
	return b
}

// maxTable is the largest inflated whole table worth reading for tables
// that hold pins in all: what they could take, plus the string table. A
// table that inflates beyond is refused as it inflates, so a small
// compressed bomb costs no more memory than this.
func maxTable(pins int) int {
	return 64 + maxNames*(maxNameLen+3) + pins*maxRecordLen
}

// decode reads a message, inflating a whole table to at most maxBody
// bytes; it never panics, whatever the bytes.
func decode(msg []byte, maxBody int) (byte, header, []entry, error) {
	if len(msg) < 2 {
		return 0, header{}, nil, fmt.Errorf("%w: %d bytes", errMessage, len(msg))
	}
	if msg[0] != wireVersion {
		return 0, header{}, nil, fmt.Errorf("cluster message of version %d; this member speaks %d: run one release on every member, or upgrade them one by one", msg[0], wireVersion)
	}
	kind, body := msg[1], msg[2:]
	switch kind {
	case kindBye:
		if len(body) > maxNameLen {
			return 0, header{}, nil, fmt.Errorf("%w: leave message of %d bytes", errMessage, len(body))
		}
		return kind, header{from: string(body)}, nil, nil
	case kindChanges:
	case kindTable:
		zr := flate.NewReader(bytes.NewReader(body))
		defer zr.Close()
		inflated, err := io.ReadAll(io.LimitReader(zr, int64(maxBody)+1))
		if err != nil {
			return 0, header{}, nil, fmt.Errorf("%w: table does not inflate: %v", errMessage, err)
		}
		if len(inflated) > maxBody {
			return 0, header{}, nil, fmt.Errorf("%w: table inflates past %d bytes, more than the pins this member's tables hold could fill", errMessage, maxBody)
		}
		body = inflated
	default:
		return 0, header{}, nil, fmt.Errorf("%w: unknown kind %q", errMessage, kind)
	}
	h, entries, err := decodeBody(body)
	return kind, h, entries, err
}

// reader reads the fields of a body and remembers the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 { return r.took(binary.Uvarint(r.b)) }

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	return int64(r.took(uint64(v), n))
}

// took consumes the n bytes a varint read took, or fails on n <= 0.
func (r *reader) took(v uint64, n int) uint64 {
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errMessage
	}
	r.b = nil
}

func (r *reader) names() []string {
	n := r.uvarint()
	if n > maxNames || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		l := r.uvarint()
		if l > maxNameLen || l > uint64(len(r.b)) {
			r.fail()
			return nil
		}
		out = append(out, string(r.b[:l]))
		r.b = r.b[l:]
	}
	return out
}

func decodeBody(body []byte) (header, []entry, error) {
	r := &reader{b: body}
	now := r.varint()
	names := r.names()
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)/minRecordLen) {
		return header{}, nil, fmt.Errorf("%w: header", errMessage)
	}
	h := header{sent: now}
	for _, s := range names {
		switch {
		case strings.HasPrefix(s, senderMark):
			h.from = s[len(senderMark):]
		case strings.HasPrefix(s, operatorMark):
			var op operator.Decision
			if json.Unmarshal([]byte(s[len(operatorMark):]), &op) == nil && op.Valid() {
				h.ops = append(h.ops, op)
			}
		case strings.HasPrefix(s, closeMark):
			var c CloseRequest
			if json.Unmarshal([]byte(s[len(closeMark):]), &c) == nil && (c.Client != "" || c.Backend != "") {
				h.closes = append(h.closes, c)
			}
		}
	}
	name := func() string {
		i := r.uvarint()
		if i >= uint64(len(names)) {
			r.fail()
			return ""
		}
		return names[i]
	}
	out := make([]entry, 0, n)
	for range n {
		e := readRecord(r, now, name)
		if r.err != nil {
			return header{}, nil, fmt.Errorf("%w: record %d of %d", errMessage, len(out)+1, n)
		}
		out = append(out, e)
	}
	return h, out, nil
}

func readRecord(r *reader, now int64, name func() string) entry {
	var e entry
	e.pool = name()
	flags := r.byte()
	if flags > flagUnpin|flagHome|flagLast|flagHeld || flags&flagUnpin != 0 && flags&flagHome != 0 {
		r.fail() // an unpin has no home; no other flag exists
		return e
	}
	k, n, err := affinity.ReadKey(r.b)
	if err != nil {
		r.fail()
		return e
	}
	r.b = r.b[n:]
	e.rec.Key = k
	if flags&flagUnpin == 0 {
		e.rec.Backend = name()
	}
	if flags&flagHome != 0 {
		e.rec.Home = name()
	}
	if flags&flagUnpin == 0 && e.rec.Backend == "" || flags&flagHome != 0 && e.rec.Home == "" {
		r.fail() // a pin names its backend, and a home is a name: "" would read back as an unpin
		return e
	}
	e.rec.Version = r.uvarint()
	e.rec.Created = now - r.varint()
	if flags&flagLast != 0 {
		e.rec.LastSeen = now - r.varint()
	}
	if flags&flagHeld != 0 {
		e.rec.HeldUntil = now + r.varint()
	}
	return e
}
