package cluster

import (
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
)

// A member whose clock is a year ahead cannot drag the others along: its
// records stamped in the future are refused and counted, this member's
// clock does not move, and an operator's unpin here is not undone by
// them. Its records stamped in the present are taken, with their hold
// measured on this member's clock (a year-ahead hold made its pins
// unexpirable before), and ctl members can say its clock is off.
func TestClockSkewBounded(t *testing.T) {
	nodes := startNodes(t, 2, 1000)
	a, b := nodes[0], nodes[1]
	now := time.Now()
	ahead := now.Add(365 * 24 * time.Hour)
	future := entry{pool: "cas", rec: affinity.Record{Key: clientKey(1), Backend: "cas2",
		Version: affinity.StampOf(ahead), Created: ahead.Unix()}}
	present := entry{pool: "cas", rec: affinity.Record{Key: clientKey(2), Backend: "cas3",
		Version: affinity.StampOf(now), Created: ahead.Unix(), HeldUntil: ahead.Add(time.Minute).Unix()}}
	b.m.receive(enc(kindChanges, header{sent: ahead.Unix(), from: a.m.Name()}, []entry{future, present}))

	if got := b.m.stats.Future.Load(); got != 1 {
		t.Fatalf("records refused as future: %d, want 1", got)
	}
	if in, err := b.table.Lookup(clientKey(1)); err == nil {
		t.Fatalf("the year-ahead record was taken: %+v", in)
	}
	if stamp := b.table.Clock().Now(); affinity.StampTime(stamp).After(now.Add(time.Hour)) {
		t.Fatalf("this member's clock moved to %v", affinity.StampTime(stamp))
	}
	var held int64
	b.table.Records(func(r affinity.Record) bool {
		if r.Key == clientKey(2) {
			held = r.HeldUntil
		}
		return true
	})
	if d := time.Unix(held, 0).Sub(now); d < 30*time.Second || d > 2*time.Minute {
		t.Fatalf("the present record is held %v from now on this member's clock, want about a minute", d)
	}
	var offset int64
	for _, mi := range b.m.Members() {
		if mi.Name == a.m.Name() {
			offset = mi.ClockOffset
		}
	}
	if offset < 365*24*3600-5 {
		t.Fatalf("member %s's clock offset reads %ds, want a year", a.m.Name(), offset)
	}
}
