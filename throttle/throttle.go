// Package throttle lets a log line through now and then and counts the
// calls it held back, so a flood of one failure (every client refused, a
// disk full, a table full) costs one line per period, and that line says
// how many it stands for. It is the one way stickylb rate-limits its
// logs.
package throttle

import (
	"sync"
	"time"
)

// Log throttles one kind of log line. The zero value lets a line through
// every Period; Period 0 means 5s.
type Log struct {
	Period time.Duration

	mu   sync.Mutex
	last time.Time
	held int
}

// DefaultPeriod is a Log's period when it sets none.
const DefaultPeriod = 5 * time.Second

// Do counts a call and, when a period has passed since the last line it
// let through, runs f with the number of calls the line stands for (this
// one and those held back since). f runs outside the lock.
func (l *Log) Do(f func(count int)) {
	period := l.Period
	if period <= 0 {
		period = DefaultPeriod
	}
	l.mu.Lock()
	l.held++
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < period {
		l.mu.Unlock()
		return
	}
	n := l.held
	l.last, l.held = now, 0
	l.mu.Unlock()
	f(n)
}

// Note is the note log lines carry: how often they come at most.
func (l *Log) Note() string {
	period := l.Period
	if period <= 0 {
		period = DefaultPeriod
	}
	return "logged at most every " + period.String() + "; count is the events this line stands for"
}
