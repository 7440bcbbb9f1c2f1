package pool

import (
	"github.com/stickylb/stickylb/config"
	"strconv"
	"testing"
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
