package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/kit/lbtest"
)

// Pins replicated per second from one member to two others, and bytes on
// the wire per pin event: b.N new pins are made at n1 and the clock runs
// until both others hold them all.
//
//	go test -run XXX -bench Replication -benchtime 200000x ./cluster
func BenchmarkReplication(b *testing.B) {
	nodes := startNodes(b, 3, 2*b.N+1000) // room to spare: a shard's bound is its share of the whole
	sent0, bytes0 := nodes[0].m.stats.Sent.Load(), nodes[0].m.stats.BytesSent.Load()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		// Made as fast as they are sent: past the send queue a burst
		// is dropped and left to the next sync, which is not what this
		// measures.
		for len(nodes[0].m.out) > outQueue*3/4 {
			time.Sleep(100 * time.Microsecond)
		}
		l, _ := nodes[0].table.Acquire(clientKey(i), pinTo(fmt.Sprintf("cas%d", i%3+1)))
		l.Release()
	}
	lbtest.Eventually(b, time.Minute, "every pin at n2 and n3", func() bool {
		return nodes[1].table.Len() == b.N && nodes[2].table.Len() == b.N
	})
	took := time.Since(start)
	b.StopTimer()
	st := &nodes[0].m.stats
	b.ReportMetric(float64(b.N)/took.Seconds(), "pins/s")
	b.ReportMetric(float64(st.BytesSent.Load()-bytes0)/float64(st.Sent.Load()-sent0), "bytes/pin-event")
	b.ReportMetric(float64(st.Dropped.Load()), "dropped")
}

// Time for a member joining to take a table of b.N pins from a peer:
// Join returns once the whole table is merged.
//
//	go test -run XXX -bench Join -benchtime 1000000x ./cluster
func BenchmarkJoin(b *testing.B) {
	addrs := []string{lbtest.FreeAddr(b, "127.0.4.21"), lbtest.FreeAddr(b, "127.0.4.22")}
	old := startNode(b, fmt.Sprint("old", b.N), addrs[0], addrs[:1], 2*b.N+1000)
	for i := range b.N {
		l, _ := old.table.Acquire(clientKey(i), pinTo(fmt.Sprintf("cas%d", i%3+1)))
		l.Release()
	}
	lbtest.Eventually(b, time.Minute, "the send queue empty", func() bool { return len(old.m.out) == 0 })
	b.ResetTimer()
	start := time.Now()
	joiner := startNode(b, fmt.Sprint("new", b.N), addrs[1], addrs, 2*b.N+1000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if !joiner.m.Join(ctx) || joiner.table.Len() != b.N {
		b.Fatalf("joined with %d pins of %d", joiner.table.Len(), b.N)
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(took.Seconds(), "s/join")
	b.ReportMetric(float64(old.m.stats.SyncBytesSent.Load())/float64(b.N), "table-bytes/pin")
}

// The cost the cluster adds to a connection's pin decision: Note, called
// on the connection's goroutine, queues the change and returns.
//
//	go test -run XXX -bench AcquireNewWith -benchtime 1000000x ./cluster
func BenchmarkAcquireNewWithCluster(b *testing.B) {
	nodes := startNodes(b, 1, b.N+1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l, _ := nodes[0].table.Acquire(clientKey(i), pinTo("cas1"))
		l.Release()
	}
}

// BenchmarkAcquireNewAlone is a new pin's decision without a cluster, for
// comparison with BenchmarkAcquireNewWithCluster.
func BenchmarkAcquireNewAlone(b *testing.B) {
	t := affinity.NewTable(affinity.Config{MaxEntries: b.N + 1000})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l, _ := t.Acquire(clientKey(i), pinTo("cas1"))
		l.Release()
	}
}
