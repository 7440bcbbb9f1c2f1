package operator

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/pool"
)

// No bytes read as a decisions file crash the reader, and every decision
// it returns is one that can be applied; what Save writes reads back.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"magic":"stickylb-operator-decisions","operators":[{"p":"cas","b":"cas2","s":"maint","w":-1,"f":1,"v":7}]}`))
	f.Add([]byte(`{"magic":"stickylb-operator-decisions","operators":[{"p":"cas","b":"cas2","s":"nap","w":5000}]}`))
	f.Add([]byte(`{"magic":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "pins.json.operator")
		os.WriteFile(path, b, 0o600)
		ds, err := Load(path)
		for _, d := range ds {
			if !d.Valid() {
				t.Fatalf("an invalid decision read: %+v", d)
			}
		}
		if err != nil {
			return
		}
		if err := Save(path, ds); err != nil {
			t.Fatal(err)
		}
		again, err := Load(path)
		if err != nil || len(again) != len(ds) {
			t.Fatalf("saved %d decisions, read back %d: %v", len(ds), len(again), err)
		}
	})
}

// A decision with a state this version does not know (a newer one wrote
// it) is left out, and the others in the file are kept: one bad entry
// does not cost every drain.
func TestLoadSkipsWhatItCannotApply(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json.operator")
	os.WriteFile(path, []byte(`{"magic":"stickylb-operator-decisions","operators":[{"p":"cas","b":"cas1","s":"nap","w":-1,"v":1},{"p":"cas","b":"cas2","s":"drain","w":-1,"v":2}]}`), 0o600)
	ds, err := Load(path)
	if err != nil || len(ds) != 1 || ds[0].Backend != "cas2" || ds[0].State != pool.Drain {
		t.Fatalf("read %+v, %v; want cas2's drain alone", ds, err)
	}
}

// The longest decision a config that passes can make, every field at its
// widest and both names of MaxName bytes as JSON writes them, fits one
// entry of a cluster message.
func TestLongestDecisionFits(t *testing.T) {
	d := Decision{Pool: strings.Repeat("p", config.MaxName), Backend: strings.Repeat("b", config.MaxName), State: pool.Maint,
		DrainUntil: math.MaxInt64, Weight: -1, FileWeight: math.MinInt, Version: math.MaxUint64}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > config.MaxWireText {
		t.Fatalf("the longest decision is %d bytes of JSON; a message entry carries %d", len(b), config.MaxWireText)
	}
}

// backends makes a pool of named backends, each of file weight 10, as
// the server would publish them.
func backends(t *testing.T, names ...string) ([]Backend, *pool.Pool) {
	t.Helper()
	var specs []pool.Spec
	for _, n := range names {
		specs = append(specs, pool.Spec{Name: n, Host: "127.0.0.1", Weight: 10})
	}
	p := pool.New("cas", config.RoundRobin, specs)
	var out []Backend
	for _, b := range p.Backends() {
		out = append(out, Backend{Pool: "cas", Backend: b, FileWeight: 10})
	}
	return out, p
}

// Of two decisions about one backend the later stamp wins, whichever
// arrives first; a decision about a backend the file removed goes with
// it, and one the file adds again starts ready.
func TestLaterStampWinsAndRemovedBackendsForget(t *testing.T) {
	bs, p := backends(t, "cas1", "cas2")
	d := New(Options{})
	d.Known(bs)
	clock := affinity.NewClock(nil)
	older, newer := clock.Now(), clock.Now()
	d.Merge([]Decision{{Pool: "cas", Backend: "cas2", State: pool.Maint, Weight: -1, Version: newer}}, "lb2")
	if d.Merge([]Decision{{Pool: "cas", Backend: "cas2", State: pool.Ready, Weight: -1, Version: older}}, "lb3") {
		t.Fatal("an older decision was taken over a newer one")
	}
	if st := p.Backend("cas2").AdminState(); st != pool.Maint {
		t.Fatalf("cas2 is %v, want maint", st)
	}
	d.Known(bs[:1])
	if _, ok := d.Held("cas", "cas2"); ok {
		t.Fatal("the decision about a removed backend is still held")
	}
	again, p2 := backends(t, "cas1", "cas2")
	d.Known(again)
	if st := p2.Backend("cas2").AdminState(); st != pool.Ready {
		t.Fatalf("cas2 added again is %v, want ready", st)
	}
}

// A weight set by an operator holds while the file's weight is the one
// it was set over; a new weight in the file is the newer decision.
func TestFileWeightChangeWins(t *testing.T) {
	bs, p := backends(t, "cas1")
	d := New(Options{})
	d.Known(bs)
	if _, _, err := d.SetWeight("cas", "cas1", 3); err != nil {
		t.Fatal(err)
	}
	d.Known(bs)
	if w := p.Backend("cas1").Weight(); w != 3 {
		t.Fatalf("weight %d after a reload that kept the file's weight, want 3", w)
	}
	bs[0].FileWeight = 20
	d.Known(bs)
	if w := p.Backend("cas1").Weight(); w != 20 {
		t.Fatalf("weight %d after the file's weight changed to 20, want 20", w)
	}
	if _, _, err := d.SetState("nope", "cas1", pool.Drain, 0); err == nil || !strings.Contains(err.Error(), `no pool "nope"`) {
		t.Fatalf("a decision about an unknown pool: %v", err)
	}
}
