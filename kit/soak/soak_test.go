//go:build linux

package soak

import (
	"context"
	"flag"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

var (
	soakFor  = flag.Duration("soak", 0, "run one soak this long (with -seed) instead of the short fixed-seed soak")
	soakSeed = flag.Uint64("seed", 1, "the soak's seed, with -soak")
	soakOut  = flag.String("soak-out", "", "directory for the timeline (text and SVG); default the test's temporary one")
)

var (
	binary      string
	isolated    bool
	notIsolated string // why not
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The soak runs in a network and mount namespace of its own where
	// it can (root), for the partition and the full disk.
	code, ran, why := Isolate()
	if ran {
		os.Exit(code)
	}
	if notIsolated = why; why == "" {
		isolated, notIsolated = Isolated()
	}
	// Members run as users of their own in the namespaces: BuildBinary's
	// folder is readable by all.
	var remove func()
	binary, remove = lbtest.BuildBinary("../../cmd/stickylb")
	code = lbtest.LeakCheck(m.Run())
	remove()
	os.Exit(code)
}

// A seed is its schedule: the same seed gives the same faults, so a
// failure replays, and another seed gives others.
func TestScheduleReplaysBySeed(t *testing.T) {
	ks := Kinds(true)
	a, b := Schedule(7, warmUp, 2*time.Minute, ks), Schedule(7, warmUp, 2*time.Minute, ks)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 7 gave two schedules:\n%v\n%v", a, b)
	}
	if reflect.DeepEqual(a, Schedule(8, warmUp, 2*time.Minute, ks)) {
		t.Fatal("seeds 7 and 8 gave the same schedule")
	}
	kinds := map[Kind]bool{}
	for _, f := range a {
		kinds[f.Kind] = true
		if f.At < warmUp || f.At+f.For > 2*time.Minute-quietEnd {
			t.Errorf("fault %v outside the warm-up and the quiet end", f)
		}
	}
	if len(kinds) < 5 {
		t.Errorf("two minutes of seed 7 has only %d kinds of fault: %v", len(kinds), a)
	}
}

// Thirty minutes of a seed draw every kind of fault, and never a drain
// or maintenance while a member is cut off (it could not learn it).
func TestScheduleHasEveryFault(t *testing.T) {
	faults := Schedule(7, warmUp, 30*time.Minute, Kinds(true))
	seen := map[Kind]int{}
	var cut []Fault
	for _, f := range faults {
		seen[f.Kind]++
		if f.Kind == Partition {
			cut = append(cut, f)
		}
	}
	for _, k := range Kinds(true) {
		if seen[k] == 0 {
			t.Errorf("no %s in 30 minutes of seed 7: %v", k, seen)
		}
	}
	for _, f := range faults {
		for _, c := range cut {
			if (f.Kind == CASMaint || f.Kind == CASDrain) && f.At+f.For >= c.At && f.At <= c.At+c.For {
				t.Errorf("%v at %v overlaps %v at %v", f, f.At, c, c.At)
			}
		}
	}
}

// The soak: three members, three CAS hosts and a Unity fleet under a
// seeded schedule of faults, every invariant holding. CI runs the short
// one (fixed seed); -soak 30m -seed N runs a long one.
func TestSoak(t *testing.T) {
	d, seed := 80*time.Second, uint64(1)
	if *soakFor > 0 {
		d, seed = *soakFor, *soakSeed
	}
	out := *soakOut
	if out == "" {
		out = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	if !isolated {
		t.Logf("the soak runs without the partition and the full disk: %s", notIsolated)
	}
	// Not t.TempDir: members of their own users must reach their folders.
	dir, err := os.MkdirTemp("", "stickylb-soak-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	res, err := Run(ctx, Config{Binary: binary, Dir: dir, Duration: d, Seed: seed, Log: t.Logf, Isolated: isolated, NotIsolated: notIsolated})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.WriteFiles(out); err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline and picture in %s\n%s", out, res.Timeline)
	for _, v := range res.Verdicts {
		if !v.Pass {
			t.Errorf("seed %d: %s", seed, v)
		}
	}
}
