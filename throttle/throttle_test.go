package throttle

import (
	"sync"
	"testing"
	"time"
)

// A flood gives one line per period, and the lines' counts add up to
// every call: none is lost, none counted twice, from many goroutines.
func TestOneLinePerPeriodCountingAll(t *testing.T) {
	l := &Log{Period: 50 * time.Millisecond}
	var mu sync.Mutex
	lines, total := 0, 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(180 * time.Millisecond)
	calls := make([]int, 4)
	for g := range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				calls[g]++
				l.Do(func(n int) { mu.Lock(); lines++; total += n; mu.Unlock() })
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	wg.Wait()
	l.Period = time.Nanosecond // flush what is held
	time.Sleep(time.Millisecond)
	l.Do(func(n int) { lines++; total += n })
	want := calls[0] + calls[1] + calls[2] + calls[3] + 1
	if total != want {
		t.Fatalf("lines stand for %d calls, %d were made", total, want)
	}
	if lines < 2 || lines > 6 {
		t.Fatalf("%d lines in 180ms at one per 50ms", lines)
	}
}
