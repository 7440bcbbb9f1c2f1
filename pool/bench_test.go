package pool

import (
	"strconv"
	"testing"
	"time"

	"github.com/stickylb/stickylb/config"
)

// BenchmarkChoose is the cost of placing a new client, per balance method
// and pool size.
func BenchmarkChoose(b *testing.B) {
	for _, n := range []int{3, 16} {
		for _, bal := range []config.Balance{config.Hash, config.LeastConn, config.RoundRobin} {
			p := New("cas", bal, specs(n))
			b.Run(bal.String()+"/"+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				for i := range b.N {
					if p.Choose(uint64(i)*0x9e3779b97f4a7c15, nil) == nil {
						b.Fatal("no backend")
					}
				}
			})
		}
	}
}

// BenchmarkBackendByName is the lookup a pinned client's decision makes
// to turn the table's backend name back into the backend.
func BenchmarkBackendByName(b *testing.B) {
	p := New("p", config.Hash, specs(16))
	for i := range b.N {
		if p.Backend("cas"+strconv.Itoa(1+i%16)) == nil {
			b.Fatal("no backend")
		}
	}
}

// BenchmarkObserveRPC is the cost of reporting one DCE/RPC outcome, as
// the proxy does for every PDU it reads, with every rule on, from many
// connections at once: calls that go well, and one fault in ten (which
// reads the clock).
func BenchmarkObserveRPC(b *testing.B) {
	p := New("p", config.Hash, specs(3))
	p.SetOutlier(&Outlier{ConsecutiveFaults: 1 << 30, ConsecutiveBindRejections: 5, FaultRate: 99, MinRequests: 1 << 30,
		Interval: 10 * time.Second, EjectionTime: 30 * time.Second, MaxEjectionTime: 5 * time.Minute, MaxEjectedShare: 50}, nil)
	cas1 := p.Backend("cas1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if i%10 == 9 {
				cas1.ObserveRPC(CallFault)
			} else {
				cas1.ObserveRPC(CallOK)
			}
		}
	})
}
