package cluster

import (
	"sync/atomic"
	"time"
)

// Stats are a member's running totals, for metrics.
type Stats struct {
	Sent, Received       atomic.Uint64 // pin records sent (per member reached) and received
	BytesSent            atomic.Uint64 // change batches
	BytesReceived        atomic.Uint64
	SyncBytesSent        atomic.Uint64 // whole tables
	SyncBytesReceived    atomic.Uint64
	Syncs                atomic.Uint64    // whole tables merged
	SendFailures         atomic.Uint64    // batches a member did not take
	Dropped              atomic.Uint64    // changes dropped with the send queue full
	Malformed            atomic.Uint64    // messages refused
	Unknown              atomic.Uint64    // records of a pool this member lacks or keys otherwise
	Future               atomic.Uint64    // records stamped beyond this member's clock + maxClockOffset
	StreamsRefused       atomic.Uint64    // gossip TCP streams closed over maxStreams
	Throttled            atomic.Uint64    // messages of a member over its share, dropped
	Strangers            atomic.Uint64    // messages from a sender the roster does not know: nothing kept for it
	LeftOut              atomic.Uint64    // records, decisions, close requests and published backends a message or the metadata could not carry
	Applied              atomic.Uint64    // records that changed a pin here
	Conflicts            atomic.Uint64    // records that decided a client otherwise than this member had
	LeftOpen             atomic.Uint64    // connections left open on a backend that lost a conflict
	delayBuckets         [9]atomic.Uint64 // DelayBuckets and one past the last
	delaySum, delayCount atomic.Uint64    // microseconds
}

// DelayBuckets are the upper bounds of the convergence-delay histogram:
// from a decision at one member to its pin changing here.
var DelayBuckets = [8]time.Duration{time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond,
	100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 10 * time.Second, time.Minute}

func (s *Stats) observeDelay(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(DelayBuckets) && d > DelayBuckets[i] {
		i++
	}
	s.delayBuckets[i].Add(1)
	s.delaySum.Add(uint64(d.Microseconds()))
	s.delayCount.Add(1)
}

// Delays returns the histogram: cumulative counts per bucket of
// DelayBuckets, then the count and the sum in seconds of all.
func (s *Stats) Delays() (cumulative []uint64, count uint64, sumSeconds float64) {
	var run uint64
	for i := range DelayBuckets {
		run += s.delayBuckets[i].Load()
		cumulative = append(cumulative, run)
	}
	return cumulative, s.delayCount.Load(), float64(s.delaySum.Load()) / 1e6
}

// Stats returns the member's totals.
func (m *Member) Stats() *Stats { return &m.stats }
