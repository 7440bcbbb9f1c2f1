//go:build deadlock

package locks

import deadlock "github.com/sasha-s/go-deadlock"

// Mutex is go-deadlock's, which reports lock-order inversions and long
// waits, then exits the process with status 2 (its default).
type Mutex = deadlock.Mutex
