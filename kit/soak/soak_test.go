//go:build linux

package soak

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	soakFor  = flag.Duration("soak", 0, "run one soak this long (with -seed) instead of the short fixed-seed soak")
	soakSeed = flag.Uint64("seed", 1, "the soak's seed, with -soak")
	soakOut  = flag.String("soak-out", "", "directory for the timeline (text and SVG); default the test's temporary one")
)

var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "stickylb-soak")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "stickylb")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/stickylb").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build stickylb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// A seed is its schedule: the same seed gives the same faults, so a
// failure replays, and another seed gives others.
func TestScheduleReplaysBySeed(t *testing.T) {
	a, b := Schedule(7, warmUp, 2*time.Minute), Schedule(7, warmUp, 2*time.Minute)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 7 gave two schedules:\n%v\n%v", a, b)
	}
	if reflect.DeepEqual(a, Schedule(8, warmUp, 2*time.Minute)) {
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
	res, err := Run(ctx, Config{Binary: binary, Dir: t.TempDir(), Duration: d, Seed: seed, Log: t.Logf})
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
