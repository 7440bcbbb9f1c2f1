package throttle

import (
	"sync"
	"testing"
	"time"
)

// A flood gives one line per period, and the lines' counts add up to
// every call: none is lost, none counted twice, from many goroutines.
// The flood runs until a third line is through (so lines do come again
// after a period), and the line count is held to the time the flood
// took, so the test means the same on a busy machine.
func TestOneLinePerPeriodCountingAll(t *testing.T) {
	l := &Log{Period: 50 * time.Millisecond}
	var mu sync.Mutex
	lines, total := 0, 0
	linesNow := func() int { mu.Lock(); defer mu.Unlock(); return lines }
	var wg sync.WaitGroup
	start := time.Now()
	bound := start.Add(30 * time.Second) // ends a flood whose lines never come again
	calls := make([]int, 4)
	for g := range 4 {
		wg.Go(func() {
			for linesNow() < 3 && time.Now().Before(bound) {
				calls[g]++
				l.Do(func(n int) { mu.Lock(); lines++; total += n; mu.Unlock() })
				time.Sleep(100 * time.Microsecond) // pacing only
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if lines < 3 {
		t.Fatalf("%d lines in %s at one per 50ms", lines, took)
	}
	// Every line let through is a period after the one before, and all of
	// them fall between start and now.
	if most := 1 + int(took/l.Period); lines > most {
		t.Fatalf("%d lines in %s at one per 50ms (at most %d)", lines, took, most)
	}
	l.Period = time.Nanosecond   // flush what is held
	time.Sleep(time.Millisecond) // a clock wait: more than the new period passes
	l.Do(func(n int) { lines++; total += n })
	want := calls[0] + calls[1] + calls[2] + calls[3] + 1
	if total != want {
		t.Fatalf("lines stand for %d calls, %d were made", total, want)
	}
}
