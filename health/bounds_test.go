package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stickylb/stickylb/kit/lbtest"

	"github.com/stickylb/stickylb/localerr"
)

// hostile is a backend that answers every request with head, then limit
// bytes of fill over and over (or fewer, if the check hangs up), then
// tail, and then holds the connection until the check closes it. It
// returns its port and a count of the bytes it wrote.
func hostile(t *testing.T, host, head, fill, tail string, limit int) (int, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	chunk := []byte(strings.Repeat(fill, max(1, (64<<10)/len(fill))))
	var wrote atomic.Int64
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.Read(make([]byte, 4096)) // the request, in one segment
				n, err := c.Write([]byte(head))
				wrote.Add(int64(n))
				for left := limit; err == nil && left > 0; left -= n {
					n, err = c.Write(chunk[:min(left, len(chunk))])
					wrote.Add(int64(n))
				}
				if err == nil {
					c.Write([]byte(tail))
					io.Copy(io.Discard, c)
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port, &wrote
}

// allocated is how many bytes the heap handed out while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// An HTTP check reads a bounded prefix of whatever a backend sends: a
// status line or headers that never end, or a body that never ends (also
// when the check has no Body to match), cost it a few hundred KiB and
// fail it saying which bound was passed, and no failure's message is
// longer than a few hundred bytes however much of the reply it quotes.
// Before the bounds, each case here read the backend's whole 64 MiB.
func TestHTTPCheckReadsBounded(t *testing.T) {
	const flood = 64 << 20
	for i, tc := range []struct {
		name             string
		head, fill, tail string
		limit            int
		body             *regexp.Regexp
		want             string // in the error; "" for a pass
	}{
		{name: "endless headers", head: "HTTP/1.1 200 OK\r\n", fill: "X-Pad: " + strings.Repeat("a", 90) + "\r\n", tail: "\r\n",
			limit: flood, want: "status line and headers over 65536 bytes"},
		{name: "endless status line", head: "HTTP/1.1 2", fill: "x", tail: "\r\n\r\n",
			limit: flood, want: "status line and headers over 65536 bytes"},
		{name: "a long malformed status line, quoted", head: "HTTP/1.1 2", fill: "x", tail: "\r\n\r\n",
			limit: 16 << 10, want: "malformed HTTP status code"},
		{name: "endless body, not matched", head: "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n", fill: "b",
			limit: flood},
		{name: "endless body, matched", head: "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n", fill: "b",
			limit: flood, body: regexp.MustCompile("cas1"), want: "body does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := fmt.Sprintf("127.0.0.%d", 31+i)
			port, wrote := hostile(t, host, tc.head, tc.fill, tc.tail, tc.limit)
			check := HTTP{Ports: []int{port}, Method: "GET", Path: "/", StatusMin: 200, StatusMax: 299, Body: tc.body}
			var err error
			alloc := allocated(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				err = check.Probe(ctx, host)
			})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("check failed: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("check said %v, want an error with %q", err, tc.want)
			}
			if err != nil && len(err.Error()) > maxErrText+64 {
				t.Errorf("the error is %d bytes: %.100s...", len(err.Error()), err)
			}
			// What the kernel buffers (a few MiB on loopback) counts
			// as written; the check itself read at most 128 KiB.
			if n := wrote.Load(); tc.limit == flood && n > 16<<20 {
				t.Errorf("the backend wrote %d MiB before the check hung up", n>>20)
			}
			if alloc > 4<<20 {
				t.Errorf("the check allocated %d KiB", alloc>>10)
			}
			t.Logf("wrote %d KiB, allocated %d KiB, error %d bytes", wrote.Load()>>10, alloc>>10, len(fmt.Sprint(err)))
		})
	}
}

// A clipped error keeps its start, says how much was cut, stays valid
// UTF-8, and still answers errors.Is for what it wraps (a local errno,
// so a huge failure on EMFILE is still not the backend's fault); an
// error that fits is returned as it is.
func TestClipError(t *testing.T) {
	small := errors.New("tcp connect 10.0.0.1:135: connection refused")
	if got := clipError(small, maxErrText); got != small {
		t.Fatalf("an error that fits came back as %v", got)
	}
	emfile := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	huge := fmt.Errorf("http 10.0.0.1:80: %s: %w", strings.Repeat("é", 1<<20), emfile)
	got := clipError(huge, maxErrText)
	msg := got.Error()
	if len(msg) > maxErrText+64 || !strings.HasPrefix(msg, "http 10.0.0.1:80: é") || !utf8.ValidString(msg) {
		t.Errorf("clipped to %d bytes: %.120q", len(msg), msg)
	}
	cut := strings.Index(msg, " ... (")
	if want := fmt.Sprintf(" ... (%d bytes more)", len(huge.Error())-cut); cut < 0 || !strings.HasSuffix(msg, want) {
		t.Errorf("%.120q... does not end with %q", msg, want)
	}
	if !localerr.Is(got) || !errors.Is(got, syscall.EMFILE) {
		t.Errorf("the clipped error lost the EMFILE it wraps")
	}
	var joined []error
	for i := range 100 {
		joined = append(joined, fmt.Errorf("port %d: %w", i, syscall.ECONNREFUSED))
	}
	got = clipError(errors.Join(joined...), maxCheckErrText)
	if len(got.Error()) > maxCheckErrText+64 || !errors.Is(got, syscall.ECONNREFUSED) {
		t.Errorf("100 joined refusals clipped to %d bytes, refused: %v", len(got.Error()), errors.Is(got, syscall.ECONNREFUSED))
	}
	switch c, ok := got.(*clipped); {
	case !ok:
		t.Errorf("100 joined refusals came back as a %T", got)
	case len(c.kept) != maxKept:
		t.Errorf("the clipped error keeps %d parts, want %d", len(c.kept), maxKept)
	}
}

// What a Checker hands on for its callers to store, the error of every
// result and of every change, is clipped, however long the probe's
// failure: a stored 150 MiB status line made /api/backends 157 MB.
func TestCheckerClipsWhatItHandsOn(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	long := fmt.Errorf("http 127.0.0.39:80: read response: %s: %w", strings.Repeat("x", 1<<20), refused)
	var rec recorder
	var mu sync.Mutex
	var results []error
	c := New(Config{Interval: 5 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1, OnChange: rec.add,
		OnResult: func(_ string, err error, _ time.Duration) { mu.Lock(); results = append(results, err); mu.Unlock() },
		Probes:   []Probe{probeFunc(func() error { return long }), probeFunc(func() error { return long })}},
		[]Target{{Name: "x", Host: "127.0.0.39", State: NewState(true, true)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	lbtest.Eventually(t, 5*time.Second, "down", func() bool { ch, n := rec.last(); return n == 1 && !ch.Up })
	cancel()
	<-done
	ch, _ := rec.last()
	mu.Lock()
	defer mu.Unlock()
	for _, err := range append(results, ch.Err) {
		if msg := err.Error(); len(msg) > maxCheckErrText+64 || !strings.Contains(msg, "bytes more)") {
			t.Fatalf("handed on an error of %d bytes: %.100s...", len(msg), msg)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("the clipped error lost the refusal it wraps: %v", err)
		}
	}
}
