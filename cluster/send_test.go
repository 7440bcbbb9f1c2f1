package cluster

import (
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// The recent changes keep the last recentMax, oldest first, once the
// ring has wrapped.
func TestRecentChangesWrap(t *testing.T) {
	var r recentChanges
	const total = recentMax + 4000
	for i := 0; i < total; i += 1000 {
		batch := make([]entry, 0, 1000)
		for j := i; j < min(i+1000, total); j++ {
			batch = append(batch, entry{pool: "cas", rec: affinity.Record{Version: uint64(j)}})
		}
		r.add(batch)
	}
	got := r.since(time.Time{})
	if len(got) != recentMax {
		t.Fatalf("%d changes kept, want %d", len(got), recentMax)
	}
	for i, e := range got {
		if want := uint64(total - recentMax + i); e.rec.Version != want {
			t.Fatalf("change %d is #%d, want #%d: not oldest first", i, e.rec.Version, want)
		}
	}
	if n := len(r.since(time.Now().Add(time.Second))); n != 0 {
		t.Fatalf("%d changes from the future", n)
	}
}
