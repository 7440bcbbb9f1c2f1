package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/internal/lbtest"
)

func benchProxy(b *testing.B) (*Listener, func()) {
	b.Helper()
	bs, ports := lbtest.StartBackends(b, []string{"127.0.0.11"}, 1)
	l, err := Listen(context.Background(), "bench", "127.0.0.1:0", 60*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	l.SetRoute(route(bs, ports[0], NetDialer{Keepalive: 60 * time.Second}))
	l.Route().Name = "bench"
	done := make(chan struct{})
	go func() { l.Serve(); close(done) }()
	return l, func() {
		l.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Wait(ctx)
	}
}

// BenchmarkShortConnection: connect, read the greeting, send 64 bytes,
// read them back, close; one client address.
func BenchmarkShortConnection(b *testing.B) {
	l, stop := benchProxy(b)
	defer stop()
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := lbtest.Connect("127.7.0.1", l.Addr())
		if err != nil {
			b.Fatal(err)
		}
		c.Write(msg)
		if _, err := io.ReadFull(c.R, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkBulk moves 64 MiB each way per operation through the proxy.
func BenchmarkBulk(b *testing.B) {
	l, stop := benchProxy(b)
	defer stop()
	const size = 64 << 20
	payload := make([]byte, 1<<20)
	b.SetBytes(2 * size)
	b.ResetTimer()
	for range b.N {
		c, err := lbtest.Connect("127.7.0.2", l.Addr())
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for sent := 0; sent < size; sent += len(payload) {
				if _, err := c.Write(payload); err != nil {
					return
				}
			}
			c.CloseWrite()
		}()
		n, err := io.Copy(io.Discard, c.R)
		if err != nil || n != size {
			b.Fatalf("echoed %d of %d: %v", n, size, err)
		}
		c.Close()
	}
}

// BenchmarkIdleConnectionMemory reports the Go memory (heap and stacks)
// the proxy holds per idle connection, with as many connections as the
// file limit allows up to 10k. The test's clients and backends live in
// this process too, so their share is measured alone first (the same
// clients connected straight to the backends) and subtracted.
//
// Descriptors per proxied connection here: the client, the proxy's two
// legs and the backend's socket. The proxy's own share is two, so 10k
// connections need 20k descriptors in the proxy alone; where the hard
// limit is lower, this measures as many as fit and reports how many.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	const perConn = 4
	n := 10_000
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if need := uint64(perConn*n + 1000); rl.Cur < need {
		want := syscall.Rlimit{Cur: need, Max: max(rl.Max, need)}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		} else {
			n = int(rl.Cur-1000) / perConn
		}
	}
	b.ReportMetric(float64(n), "conns")
	// held opens n clients to dst and returns the heap and stack they
	// added, with a function that closes them.
	held := func(dst netip.AddrPort) (uint64, uint64, func()) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		conns := make([]*lbtest.Client, 0, n)
		for i := range n {
			c, err := lbtest.Connect(lbtest.ClientIP(i), dst)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		runtime.GC()
		runtime.GC() // a second cycle shrinks stacks grown while connecting
		runtime.ReadMemStats(&after)
		used := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		return used, after.StackInuse - before.StackInuse, func() {
			for _, c := range conns {
				c.Close()
			}
		}
	}
	for range b.N {
		l, stop := benchProxy(b)
		direct, ds, closeDirect := held(netip.MustParseAddrPort(l.Route().Pool.Backends()[0].Addr(l.Route().Port)))
		closeDirect()
		time.Sleep(100 * time.Millisecond) // let the backend's handlers end
		proxied, ps, closeProxied := held(l.Addr())
		b.ReportMetric(float64(int64(ps)-int64(ds))/float64(n), "stack/conn")
		b.ReportMetric(float64(int64(proxied)-int64(direct))/float64(n), "bytes/conn")
		closeProxied()
		stop()
	}
}
