package cluster

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

func sampleEntries() []entry {
	k4, _ := affinity.ParseKey("10.1.2.3")
	k6, _ := affinity.ParseKey("2001:db8::/64")
	kc, _ := affinity.ParseKey("10.1.2.3:50123")
	return []entry{
		{pool: "cas", rec: affinity.Record{Key: k4, Backend: "cas1", Version: 0x18bcfe5680000001, Created: 1_700_000_000}},
		{pool: "cas", rec: affinity.Record{Key: k6, Backend: "cas2", Home: "cas1", Version: 7, Created: 1_699_999_000, LastSeen: 1_700_000_100, HeldUntil: 1_700_000_900}},
		{pool: "other", rec: affinity.Record{Key: kc, Version: 9, Created: 1_700_000_000}}, // an unpin
	}
}

// enc is encode for messages whose texts all fit.
func enc(kind byte, h header, entries []entry) []byte {
	msg, _ := encode(kind, h, entries)
	return msg
}

// Batches and whole tables read back as sent.
func TestWireRoundTrip(t *testing.T) {
	for _, kind := range []byte{kindChanges, kindTable} {
		want := sampleEntries()
		got, err := decodeKind(t, kind, enc(kind, header{sent: 1_700_000_500, from: "m1"}, want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("kind %c: read back\n%+v\nwant\n%+v", kind, got, want)
		}
	}
}

func decodeKind(t *testing.T, kind byte, msg []byte) ([]entry, error) {
	t.Helper()
	k, _, es, err := decode(msg, maxTable(1000))
	if err == nil && k != kind {
		t.Fatalf("kind %c read as %c", kind, k)
	}
	return es, err
}

// A message of another wire version is refused with both versions named.
func TestWireNamesOtherVersion(t *testing.T) {
	msg := enc(kindChanges, header{sent: 1, from: "m1"}, sampleEntries())
	msg[0] = 2
	_, _, _, err := decode(msg, maxTable(1000))
	if err == nil || !strings.Contains(err.Error(), "version 2; this member speaks 1") {
		t.Fatalf("err = %v; want the versions named", err)
	}
}

// Every prefix of a good message is refused without a panic.
func TestWireTruncated(t *testing.T) {
	msg := enc(kindChanges, header{sent: 1_700_000_500, from: "m1"}, sampleEntries())
	for i := range len(msg) - 1 {
		if _, _, _, err := decode(msg[:i], maxTable(1000)); err == nil {
			t.Fatalf("a message cut to %d of %d bytes decoded", i, len(msg))
		}
	}
}

// No bytes crash the decoder, and a message it reads re-encodes to the
// same records.
func FuzzDecode(f *testing.F) {
	f.Add(enc(kindChanges, header{sent: 1_700_000_500, from: "m1"}, sampleEntries()))
	f.Add(enc(kindTable, header{sent: 1_700_000_500, from: "m1"}, sampleEntries()))
	f.Add([]byte{1, 'C', 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		kind, _, es, err := decode(msg, maxTable(1000))
		if err != nil || kind == kindBye {
			return
		}
		// What decodes encodes again to a message that decodes alike.
		again, err := decodeKind(t, kind, enc(kind, header{sent: 1_700_000_500, from: "m1"}, es))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(es) {
			t.Fatalf("re-encoded message differs: %v\n%+v\n%+v", err, es, again)
		}
	})
}

// A whole table that inflates far beyond what this member's tables could
// hold is refused as it inflates: 128 MiB of zeros, a few hundred KB
// compressed, cost 1.5 GB of memory before, and now no more than the
// bound (about 17 MB for a table of 1000 pins).
func TestTableBombRefused(t *testing.T) {
	var buf bytes.Buffer
	buf.Write([]byte{wireVersion, kindTable})
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 128 {
		zw.Write(zeros)
	}
	zw.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, _, err := decode(buf.Bytes(), maxTable(1000))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "inflates past") {
		t.Fatalf("a %d-byte message inflating to 128 MiB: %v", buf.Len(), err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	if alloc > 96<<20 {
		t.Fatalf("refusing it allocated %d MB: it inflated most of the 128 MiB", alloc>>20)
	}
	t.Logf("%d KB compressed, 128 MiB inflated: refused past %d MB, %d MB allocated", buf.Len()>>10, maxTable(1000)>>20, alloc>>20)
}

// No bytes a member with the key could send break this member's table:
// whatever the message, every pin it leaves names a backend this member
// has, none is stamped beyond this member's clock and the offset it
// allows, and the table keeps its bound. The bytes go through the whole
// receive path (decode, the sender's share, its clock, the merge).
func FuzzReceive(f *testing.F) {
	now := time.Now().Unix()
	k, _ := affinity.ParseKey("10.1.2.3")
	f.Add(enc(kindChanges, header{sent: now, from: "m1"}, sampleEntries()))
	f.Add(enc(kindTable, header{sent: now - 3600, from: "m2"}, sampleEntries()))
	f.Add(enc(kindChanges, header{sent: now, from: "m1"}, []entry{
		{pool: "cas", rec: affinity.Record{Key: k, Backend: "cas9", Version: affinity.StampOf(time.Now()), Created: now}},
		{pool: "cas", rec: affinity.Record{Key: k, Backend: "cas1", Version: affinity.StampOf(time.Now().Add(365 * 24 * time.Hour)), Created: now}},
	}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		tb := affinity.NewTable(affinity.Config{MaxEntries: 64})
		m := &Member{log: slog.New(slog.DiscardHandler), self: "me", opts: Options{Pins: latest(affinity.Pins{Name: "cas", Table: tb, Backends: []string{"cas1", "cas2"}})}}
		m.receive(msg)
		limit := affinity.StampOf(time.Now().Add(maxClockOffset))
		if tb.Len() > tb.Cap() {
			t.Fatalf("%d pins in a table of %d", tb.Len(), tb.Cap())
		}
		tb.Records(func(r affinity.Record) bool {
			if r.Backend != "" && r.Backend != "cas1" && r.Backend != "cas2" {
				t.Fatalf("a pin to %q, a backend this member does not have", r.Backend)
			}
			if r.Version > limit {
				t.Fatalf("a pin stamped %v, beyond this member's clock and offset", affinity.StampTime(r.Version))
			}
			return true
		})
	})
}

// A pin whose backend name is empty is refused: it would read back as
// an unpin, and re-encoded it would lose its home (FuzzDecode found
// that message).
func TestWireRefusesPinWithoutBackend(t *testing.T) {
	for _, names := range [][2]uint64{{0, 1}, {1, 0}} { // backend "", home "h"; backend "h", home ""
		k, _ := affinity.ParseKey("10.1.2.3")
		body := binary.AppendVarint(nil, 1_700_000_500)
		body = binary.AppendUvarint(body, 2) // the string table: "", "h"
		body = append(body, 0, 1, 'h')
		body = binary.AppendUvarint(body, 1) // one record
		body = append(body, 1, flagHome)     // pool "h"
		body, _ = k.AppendBinary(body)
		body = binary.AppendUvarint(body, names[0])
		body = binary.AppendUvarint(body, names[1])
		body = append(body, 7, 0) // version, created
		msg := append([]byte{wireVersion, kindChanges}, body...)
		if _, _, es, err := decode(msg, maxTable(1000)); err == nil {
			t.Fatalf("backend index %d, home index %d: decoded %+v; want it refused", names[0], names[1], es)
		}
	}
}
