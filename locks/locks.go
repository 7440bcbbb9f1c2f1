//go:build !deadlock

// Package locks gives the upper floors (server, operator, cluster) their
// mutex type: sync.Mutex in every build, and under the deadlock build tag
// (go test -tags deadlock, which .ci/run runs for those packages)
// github.com/sasha-s/go-deadlock's, which fails the test process on a
// lock taken twice by one goroutine, on two locks taken in both orders,
// and on a lock waited on for longer than 30 seconds: the class of a
// failed upgrade that deadlocked a cluster member (issue 29) fails a test
// instead of an upgrade. Production builds carry none of it.
package locks

import "sync"

// Mutex is sync.Mutex.
type Mutex = sync.Mutex
