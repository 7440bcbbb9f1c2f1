package proxy

import (
	"context"
	"io"
	"log/slog"
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

// BenchmarkIdleConnectionMemory reports the memory held per idle proxied
// connection with 10k open (both proxy legs and their goroutines, plus
// the test's own client and backend, which live in the same process: the
// figure is an upper bound). Four sockets per connection are in this
// process, and Go's splice path holds a pipe (two more descriptors) per
// direction for as long as the copy runs, in the proxy and in the test
// backend's echo: ten descriptors per connection, six of them the
// proxy's. Where the file limit cannot be raised that far, it measures
// as many connections as fit and reports how many.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	n := 10_000
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	if need := uint64(10*n + 1000); rl.Cur < need {
		want := syscall.Rlimit{Cur: need, Max: max(rl.Max, need)}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		} else {
			n = int(rl.Cur-1000) / 10
		}
	}
	b.ReportMetric(float64(n), "conns")
	for range b.N {
		l, stop := benchProxy(b)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		conns := make([]*lbtest.Client, 0, n)
		for i := range n {
			c, err := lbtest.Connect(lbtest.ClientIP(i), l.Addr())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		used := (after.HeapInuse + after.StackInuse) - (before.HeapInuse + before.StackInuse)
		b.ReportMetric(float64(used)/float64(n), "bytes/conn")
		for _, c := range conns {
			c.Close()
		}
		stop()
	}
}
