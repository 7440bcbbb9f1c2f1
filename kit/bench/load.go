//go:build linux

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/stickylb/stickylb/dcerpc"
	"github.com/stickylb/stickylb/kit/loop"
)

// Mode is the kind of load.
type Mode string

const (
	// Short: connect, read the greeting, echo Size bytes, close.
	Short Mode = "short"
	// Long: Concurrency connections stay open for the whole run, each
	// echoing Size bytes in a loop; clients reconnect when cut.
	Long Mode = "long"
	// Bulk: connect, send Size bytes and half-close, read the echo.
	Bulk Mode = "bulk"
	// RPC: connect, bind EMSMDB, make Calls requests, each answered
	// with the backend's name (loop's RPC port), close.
	RPC Mode = "rpc"
)

// Config describes a run. Zero values mean the defaults.
type Config struct {
	Target      string        // balancer address, host:port
	Mode        Mode          // default short
	Clients     int           // distinct source addresses, 127.10.0.1 up (default 100)
	Concurrency int           // connections in flight (default 32)
	Rate        float64       // connections per second; 0: as fast as possible
	Duration    time.Duration // default 10s
	MaxConns    int64         // stop after this many connections; 0: no limit
	Size        int           // bytes echoed per connection (default 64; bulk 16 MiB); rpc: stub bytes per request
	Calls       int           // rpc: requests per connection (default 1)
	Timeout     time.Duration // per dial and per read (default 5s)
	// Event, if set, runs once At (a fraction of Duration) into the run,
	// for example to kill a backend; Remap then compares each client's
	// backend before and after it.
	Event func()
	At    float64
	// Removed names the backend the event removes, so that its clients
	// moving is not counted as a violation.
	Removed string
	// Progress is called about four times a second.
	Progress func(Progress)
}

// Progress is a running total.
type Progress struct {
	Elapsed, Duration time.Duration
	Conns, Errors     int64
}

// SourceIP returns client address i: 127.10.0.1, 127.10.0.2, ...
func SourceIP(i int) string { return loop.SourceIP(10, i) }

type observation struct {
	client  int
	backend string
	at      time.Duration
}

type runner struct {
	cfg     Config
	start   time.Time
	eventAt time.Duration
	conns   atomic.Int64
	errs    atomic.Int64
	bytes   atomic.Int64
	next    atomic.Int64

	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	obs     []observation
	errKind map[string]int64
	perSec  map[int]int64
}

// Run drives the load and scores it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if _, _, err := net.SplitHostPort(cfg.Target); err != nil {
		return nil, fmt.Errorf("target %q: want host:port", cfg.Target)
	}
	if cfg.Mode == RPC && cfg.Size > dcerpc.MaxRequestStub {
		return nil, fmt.Errorf("rpc stub of %d bytes: at most %d fit one fragment", cfg.Size, dcerpc.MaxRequestStub)
	}
	r := &runner{cfg: cfg, hist: hdrhistogram.New(1, 60_000_000, 3), errKind: map[string]int64{}, perSec: map[int]int64{}}
	if err := r.warmUp(ctx); err != nil {
		return nil, err
	}
	// Cancelled at the end rather than given a deadline: see sim.Fleet.Run.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.AfterFunc(cfg.Duration, cancel)
	defer end.Stop()
	r.start = time.Now()
	done := r.startWorkers(ctx)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var event <-chan time.Time
	if cfg.Event != nil {
		r.eventAt = time.Duration(float64(cfg.Duration) * cfg.At)
		event = time.After(r.eventAt)
	}
	for {
		select {
		case <-done:
			return r.result(time.Since(r.start)), nil
		case <-event:
			event = nil
			cfg.Event()
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(Progress{Elapsed: time.Since(r.start), Duration: cfg.Duration, Conns: r.conns.Load(), Errors: r.errs.Load()})
			}
		}
	}
}

// defaults fills in what the zero values of cfg leave open.
func (cfg *Config) defaults() {
	if cfg.Mode == "" {
		cfg.Mode = Short
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 100
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Size <= 0 {
		cfg.Size = 64
		if cfg.Mode == Bulk {
			cfg.Size = 16 << 20
		}
	}
	if cfg.Calls <= 0 {
		cfg.Calls = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.At <= 0 || cfg.At >= 1 {
		cfg.At = 0.5
	}
}

// startWorkers runs the connection workers, paced by cfg.Rate when set,
// until ctx ends; the channel closes when they all have.
func (r *runner) startWorkers(ctx context.Context) <-chan struct{} {
	var tokens <-chan time.Time
	var stopTicker func()
	if r.cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / r.cfg.Rate))
		tokens, stopTicker = t.C, t.Stop
	}
	var wg sync.WaitGroup
	for w := range r.cfg.Concurrency {
		wg.Go(func() { r.worker(ctx, w, tokens) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		if stopTicker != nil {
			stopTicker()
		}
		close(done)
	}()
	return done
}

// warmUp waits until the target greets a connection (rpc: answers a
// bind and a call), so a balancer that is still bringing its backends up
// does not count against itself.
func (r *runner) warmUp(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := r.dialer(SourceIP(r.cfg.Clients)).DialContext(ctx, "tcp", r.cfg.Target)
		if err == nil {
			c.SetDeadline(time.Now().Add(r.cfg.Timeout))
			if r.cfg.Mode == RPC {
				_, err = rpcHello(dcerpc.NewClient(c), c, nil, r.cfg.Timeout)
			} else {
				_, err = bufio.NewReader(c).ReadString('\n')
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("target %s did not answer a connection within 10s (are bench backends behind it?): %v", r.cfg.Target, last)
}

// dialer binds each connection to its client's source address.
func (r *runner) dialer(src string) *net.Dialer { return loop.Dialer(src, r.cfg.Timeout) }

func (r *runner) worker(ctx context.Context, w int, tokens <-chan time.Time) {
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		if tokens != nil {
			select {
			case <-ctx.Done():
				return
			case <-tokens:
			}
		}
		n := r.next.Add(1)
		if r.cfg.MaxConns > 0 && n > r.cfg.MaxConns {
			return
		}
		client := int(n-1) % r.cfg.Clients
		if r.cfg.Mode == Long {
			client = w % r.cfg.Clients
		}
		r.one(ctx, client, buf)
	}
}

// one makes one connection (for Long: one connection, used until the run
// ends or it breaks).
func (r *runner) one(ctx context.Context, client int, buf []byte) {
	start := time.Now()
	c, err := r.dialer(SourceIP(client)).DialContext(ctx, "tcp", r.cfg.Target)
	if err != nil {
		r.fail(ctx, err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(r.cfg.Timeout))
	if r.cfg.Mode == RPC {
		r.rpc(ctx, c, client, start, buf)
		return
	}
	br := bufio.NewReaderSize(c, 256)
	name, err := br.ReadString('\n')
	if err != nil {
		r.fail(ctx, fmt.Errorf("greeting: %w", err))
		return
	}
	r.observe(client, name[:len(name)-1])
	switch r.cfg.Mode {
	case Short:
		if err := r.echo(c, br, buf); err != nil {
			r.fail(ctx, err)
			return
		}
		r.done(start, int64(r.cfg.Size))
	case Bulk:
		go func() {
			left := r.cfg.Size
			chunk := make([]byte, min(1<<20, left))
			for left > 0 {
				n, err := c.Write(chunk[:min(len(chunk), left)])
				if err != nil {
					return
				}
				left -= n
			}
			c.(*net.TCPConn).CloseWrite()
		}()
		c.SetDeadline(time.Now().Add(r.cfg.Timeout + r.cfg.Duration))
		n, err := io.CopyBuffer(io.Discard, br, buf)
		if err != nil || n != int64(r.cfg.Size) {
			r.fail(ctx, fmt.Errorf("bulk echo: %d of %d bytes: %v", n, r.cfg.Size, err))
			return
		}
		r.done(start, 2*n)
	case Long:
		r.done(start, 0)
		for ctx.Err() == nil {
			t := time.Now()
			c.SetDeadline(t.Add(r.cfg.Timeout))
			if err := r.echo(c, br, buf); err != nil {
				r.fail(ctx, err)
				return
			}
			r.record(time.Since(t), int64(r.cfg.Size))
		}
	}
}

func (r *runner) echo(c net.Conn, br *bufio.Reader, buf []byte) error {
	msg := buf[:r.cfg.Size]
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := io.ReadFull(br, buf[:r.cfg.Size]); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	return nil
}

func (r *runner) observe(client int, backend string) {
	r.mu.Lock()
	r.obs = append(r.obs, observation{client, backend, time.Since(r.start)})
	r.mu.Unlock()
}

func (r *runner) done(start time.Time, bytes int64) {
	r.conns.Add(1)
	r.record(time.Since(start), bytes)
	r.mu.Lock()
	r.perSec[int(time.Since(r.start)/time.Second)]++
	r.mu.Unlock()
}

func (r *runner) record(d time.Duration, bytes int64) {
	r.bytes.Add(bytes)
	r.mu.Lock()
	r.hist.RecordValue(max(d.Microseconds(), 1))
	r.mu.Unlock()
}

// fail counts an error, unless it is the run ending.
func (r *runner) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.errs.Add(1)
	r.mu.Lock()
	r.errKind[kind(err)]++
	r.mu.Unlock()
}

func kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}
