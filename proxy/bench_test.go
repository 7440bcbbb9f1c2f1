//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stickylb/stickylb/affinity"
	"github.com/stickylb/stickylb/config"
	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

func benchProxy(b *testing.B) (*Listener, func()) {
	b.Helper()
	bs, ports := lbtest.StartBackends(b, []string{"127.0.0.11"}, 1)
	l, err := Listen(context.Background(), &config.Listener{Name: "bench", Listen: "127.0.0.1:0", RangeMode: config.RangeAuto}, 60*time.Second, slog.New(slog.DiscardHandler))
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
// the proxy holds per idle proxied connection. The proxy runs alone in
// this process; the backend and the clients are helper processes (this
// test binary again, see idleHelper), so everything counted here is the
// proxy's, and each process has a file limit of its own. The proxy needs
// two descriptors per connection: 10k connections, or as many as this
// process's limit allows (9,990 under a hard limit of 20,000).
func BenchmarkIdleConnectionMemory(b *testing.B) {
	limit, restore := raiseFileLimit()
	defer restore()
	n := min(10_000, (limit-20)/2)
	b.ReportMetric(float64(n), "conns")
	for range b.N {
		backend := startHelper(b, "backend", "127.0.0.11")
		port, err := strconv.Atoi(backend.line(b, "port "))
		if err != nil {
			b.Fatal(err)
		}
		l, err := Listen(context.Background(), &config.Listener{Name: "bench", Listen: "127.0.0.1:0", RangeMode: config.RangeAuto}, 60*time.Second, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		l.SetRoute(&Route{Name: "bench",
			Pool:  pool.New("cas", config.Hash, []pool.Spec{{Name: "cas1", Host: "127.0.0.11", Weight: 1}}),
			Table: affinity.NewTable(affinity.Config{}), Port: port, ConnectTimeout: 5 * time.Second,
			HalfCloseTimeout: time.Second, Dialer: NetDialer{Keepalive: 60 * time.Second}})
		done := make(chan struct{})
		go func() { l.Serve(); close(done) }()

		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		clients := startHelper(b, "clients", l.Addr().String(), strconv.Itoa(n))
		if got := clients.line(b, "connected "); got != strconv.Itoa(n) {
			b.Fatalf("clients helper connected %s of %d", got, n)
		}
		runtime.GC()
		runtime.GC() // a second cycle shrinks stacks grown while connecting
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/float64(n), "stack/conn")
		b.ReportMetric(float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse))/float64(n), "bytes/conn")

		clients.stop()
		l.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l.Wait(ctx)
		cancel()
		backend.stop()
	}
}

// helperRole names the role a re-executed test binary plays; its
// arguments follow in helperArgs, separated by spaces.
const (
	helperRole = "STICKYLB_PROXY_HELPER"
	helperArgs = "STICKYLB_PROXY_HELPER_ARGS"
)

type helper struct {
	role  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startHelper runs this test binary as a helper process (see idleHelper).
// It ends when its standard input closes.
func startHelper(b *testing.B, role string, args ...string) *helper {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperRole+"="+role, helperArgs+"="+strings.Join(args, " "))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &helper{role: role, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	b.Cleanup(h.stop)
	return h
}

// line reads the helper's next line, which must start with prefix, and
// returns the rest.
func (h *helper) line(b *testing.B, prefix string) string {
	b.Helper()
	if !h.out.Scan() {
		b.Fatalf("%s helper ended before saying %q", h.role, prefix)
	}
	rest, ok := strings.CutPrefix(h.out.Text(), prefix)
	if !ok {
		b.Fatalf("%s helper said %q, want %q...", h.role, h.out.Text(), prefix)
	}
	return rest
}

func (h *helper) stop() {
	if h.stdin.Close() == nil {
		h.cmd.Wait()
	}
}

// idleHelper is the body of a helper process: "backend HOST" listens on
// HOST, says "port N", greets every connection with "cas1" and holds it;
// "clients ADDR N" opens N connections to ADDR from as many loopback
// addresses, reads each greeting, says "connected N" and holds them. Both
// hold on until standard input closes.
func idleHelper(role string, args []string) error {
	raiseFileLimit()
	var held []net.Conn
	switch {
	case role == "backend" && len(args) == 1:
		ln, err := net.Listen("tcp", net.JoinHostPort(args[0], "0"))
		if err != nil {
			return err
		}
		fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("cas1\n"))
				held = append(held, c) // only this goroutine touches held until exit
			}
		}()
	case role == "clients" && len(args) == 2:
		dst, err := netip.ParseAddrPort(args[0])
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		for i := range n {
			c, err := lbtest.Connect(lbtest.ClientIP(i), dst)
			if err != nil {
				return fmt.Errorf("client %d of %d: %w", i+1, n, err)
			}
			held = append(held, c)
		}
		fmt.Printf("connected %d\n", len(held))
	default:
		return fmt.Errorf("unknown helper %s %q", role, args)
	}
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// raiseFileLimit raises this process's open-file limit to its hard limit
// and returns the limit now in force, with a function that puts the old
// one back.
func raiseFileLimit() (int, func()) {
	var old syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old)
	raised := old
	raised.Cur = old.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
		return int(old.Cur), func() {}
	}
	return int(raised.Cur), func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) }
}

// BenchmarkRPC measures what reading DCE/RPC costs a short RPC round
// trip, with dcerpc off, binds and calls, through one proxy to an RPC
// backend in this process: "connection" is connect, bind, one call,
// close; "call" is one request and its response on an open, bound
// connection. cpu-us/op is this process's CPU (client, proxy and
// backend) per operation: the differences between modes are the proxy's.
func BenchmarkRPC(b *testing.B) {
	for _, depth := range []config.DCERPC{config.RPCOff, config.RPCBinds, config.RPCCalls} {
		addr := lbtest.StartRPC(b, "127.0.0.11", 0, lbtest.RPCServer{Name: "cas1"})
		l, err := Listen(context.Background(), &config.Listener{Name: "bench", Listen: "127.0.0.1:0", RangeMode: config.RangeAuto}, 60*time.Second, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		l.SetRoute(&Route{Name: "bench", Pool: pool.New("cas", config.Hash, []pool.Spec{{Name: "cas1", Host: "127.0.0.11", Weight: 1}}),
			Table: affinity.NewTable(affinity.Config{}), Port: int(addr.Port()), ConnectTimeout: 5 * time.Second,
			HalfCloseTimeout: time.Second, Dialer: NetDialer{Keepalive: 60 * time.Second}, DCERPC: depth,
			Observer: Observer{RPC: func(string, *pool.Backend, RPCOutcome) {}}})
		done := make(chan struct{})
		go func() { l.Serve(); close(done) }()
		b.Run("connection/"+depth.String(), func(b *testing.B) {
			cpu := cpuTime()
			for range b.N {
				c, err := lbtest.DialRPC("127.7.0.3", l.Addr())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Bind(dcerpc.EMSMDB, false); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Call(1); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
		})
		b.Run("call/"+depth.String(), func(b *testing.B) {
			c, err := lbtest.DialRPC("127.7.0.4", l.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Bind(dcerpc.EMSMDB, false); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu := cpuTime()
			for range b.N {
				if _, err := c.Call(1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
		})
		l.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.Wait(ctx)
		cancel()
	}
}

// cpuTime is the CPU time, user and system, this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
