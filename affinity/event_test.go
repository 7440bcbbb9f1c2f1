package affinity

import (
	"net/netip"
	"testing"
)

// Each kind of change converts to one record, the same for the journal
// and the cluster, and only the changes every member makes alike are
// shared: pins, re-pins and an operator's deletions made here.
func TestEventRecordAndShared(t *testing.T) {
	k := Keyer{}.Key(netip.MustParseAddrPort("10.0.0.1:5000"))
	for _, c := range []struct {
		ev         Event
		backend    string
		ok, shared bool
	}{
		{Event{Kind: EventPin, Key: k, Backend: "cas1", Version: 5}, "cas1", true, true},
		{Event{Kind: EventRepin, Key: k, Backend: "cas2", From: "cas1", Version: 6}, "cas2", true, true},
		{Event{Kind: EventPin, Key: k, Backend: "cas1", Version: 5, Remote: true}, "cas1", true, false},
		{Event{Kind: EventUnpin, Key: k, Backend: "cas1", Unpin: Deleted, Version: 7}, "", true, true},
		{Event{Kind: EventUnpin, Key: k, Backend: "cas1", Unpin: Expired}, "", true, false},
		{Event{Kind: EventUnpin, Key: k, Backend: "cas1", Unpin: Evicted}, "", true, false},
		{Event{Kind: EventFull, Key: k}, "", false, false},
		{Event{Kind: EventThrottled, Key: k}, "", false, false},
		{Event{Kind: EventPrefixFull, Key: k}, "", false, false},
	} {
		r, ok := c.ev.Record()
		if ok != c.ok || r.Backend != c.backend || (ok && (r.Key != k || r.Version != c.ev.Version)) {
			t.Errorf("%v %v: record %+v, %v; want backend %q, %v", c.ev.Kind, c.ev.Unpin, r, ok, c.backend, c.ok)
		}
		if got := c.ev.Shared(); got != c.shared {
			t.Errorf("%v %v remote=%v: shared %v, want %v", c.ev.Kind, c.ev.Unpin, c.ev.Remote, got, c.shared)
		}
	}
}
