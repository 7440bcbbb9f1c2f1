//go:build linux

package proxy

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// A hand-over message reads back as what was written, and the end as
// the end.
func TestMovedRoundTrip(t *testing.T) {
	m := Moved{ID: 7, Listener: "rpc", Client: netip.MustParseAddrPort("10.1.2.3:50000"), Backend: "cas2",
		Addr: "10.0.0.12:6001", Start: time.Unix(1_700_000_000, 0).UTC(), ToBackend: 10, ToClient: 20}
	half := m
	half.HalfClosed, half.HalfCloseUntil = BackendSentFIN, time.Unix(1_700_000_060, 0).UTC()
	for _, m := range []Moved{m, half} {
		b, err := encodeMoved(&m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMoved(b)
		if err != nil || got != m {
			t.Fatalf("read back %+v %v, want %+v", got, err, m)
		}
	}
	end, _ := encodeMoved(nil)
	if _, err := decodeMoved(end); !errors.Is(err, errMoveEnd) {
		t.Fatalf("the end read back as %v", err)
	}
}

// decodeMoved reads what the process being replaced sends: any bytes
// give a Moved, the end or an error, never a panic, and a Moved it
// accepts names its client, listener and backend and writes back the
// same.
func FuzzDecodeMoved(f *testing.F) {
	m := Moved{ID: 1, Listener: "l", Client: netip.MustParseAddrPort("127.0.0.1:1"), Backend: "b", Addr: "127.0.0.11:135"}
	b, _ := encodeMoved(&m)
	f.Add(b)
	end, _ := encodeMoved(nil)
	f.Add(end)
	f.Add([]byte("SLBC\x03\x00\x00\x00\x00")) // another version
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := decodeMoved(in)
		if err != nil {
			return
		}
		if !got.Client.IsValid() || got.Listener == "" || got.Backend == "" {
			t.Fatalf("accepted %+v", got)
		}
		again, err := encodeMoved(&got)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := decodeMoved(again); err != nil || back.ID != got.ID || back.Client != got.Client {
			t.Fatalf("%+v wrote back as %+v %v", got, back, err)
		}
	})
}
