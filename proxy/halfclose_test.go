//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stickylb/stickylb/kit/lbtest"
)

var casHosts = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}

// syncBuf is a log destination the test can read while the proxy writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Several MB each way with an immediate half-close arrive intact: the
// backend keeps sending after the client's FIN and every byte gets there.
func TestPayloadIntegrityWithHalfClose(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	var log syncBuf
	l := serveLogged(t, route(bs, ports[0], nil), &log)
	for i, size := range []int{1, 64 << 10, 8 << 20} {
		payload := make([]byte, size)
		rand.Read(payload)
		c, err := lbtest.Connect(lbtest.ClientIP(5000+i), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.CloseWrite()
			}
			sent <- err
		}()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c.R)
		if err != nil {
			t.Fatalf("%d bytes: read: %v", size, err)
		}
		if err := <-sent; err != nil {
			t.Fatalf("%d bytes: write: %v", size, err)
		}
		c.Close()
		want := sha256.Sum256(payload)
		if n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("%d bytes sent, %d came back, hash match %v", size, n, bytes.Equal(h.Sum(nil), want[:]))
		}
	}
	lbtest.Eventually(t, 5*time.Second, "closed-connection log lines", func() bool {
		return strings.Count(log.String(), "connection closed") >= 3
	})
	if !strings.Contains(log.String(), fmt.Sprintf("bytes_to_backend=%d", 8<<20)) {
		t.Errorf("the closed-connection line does not count the 8 MB sent")
	}
}

// The half-closed state is bounded: a backend that never finishes after
// the client's FIN is cut after half_close_timeout.
func TestHalfCloseTimeout(t *testing.T) {
	// A backend that reads to EOF and then sends nothing and never closes.
	ln, err := net.Listen("tcp", "127.0.0.14:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hold := make(chan struct{})
	defer close(hold)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				<-hold
			}()
		}
	}()
	r := route([]*lbtest.Backend{{Name: "x", Host: "127.0.0.14"}}, ln.Addr().(*net.TCPAddr).Port, nil)
	r.HalfCloseTimeout = 200 * time.Millisecond
	c, err := lbtest.Dial(lbtest.ClientIP(12), serve(t, r).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.CloseWrite()
	// The read deadline only bounds a test that would otherwise hang:
	// the cut is the proxy's, seen as EOF or a reset, never a timeout.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = c.Read(make([]byte, 1))
	took := time.Since(start)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("half-closed connection not cut: %v after %s", err, took)
	}
	if took < r.HalfCloseTimeout {
		t.Fatalf("cut after %s, before half_close_timeout %s", took, r.HalfCloseTimeout)
	}
}

// idle_timeout closes a connection with no traffic and spares one with
// traffic, measured by the kernel rather than by a deadline per read.
// A busy machine can stall the test itself past the timeout, and then a
// cut is right; what no load excuses is a cut less than the timeout after
// the client last sent.
func TestIdleTimeout(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	r := route(bs, ports[0], nil)
	r.IdleTimeout = 300 * time.Millisecond
	l := serve(t, r)
	idle, err := lbtest.Connect(lbtest.ClientIP(13), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	var busy *lbtest.Client
	var opened, sent time.Time // when busy was opened; when it last sent and got its echo
	connect := func() {
		opened, sent = time.Now(), time.Now()
		if busy, err = lbtest.Connect(lbtest.ClientIP(14), l.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	connect()
	defer func() { busy.Close() }()
	for exchanges, stalls := 0, 0; exchanges < 10 || time.Since(opened) < 4*r.IdleTimeout; {
		time.Sleep(50 * time.Millisecond) // pacing: well inside the timeout
		start := time.Now()
		busy.Write([]byte("x\n"))
		busy.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := busy.R.ReadString('\n')
		var ne net.Error
		switch since := time.Since(sent); {
		case err == nil:
			sent = start
			exchanges++
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("busy connection: no echo in 10s")
		case since < r.IdleTimeout:
			t.Fatalf("busy connection cut %s after it last sent, within the idle timeout %s: %v", since, r.IdleTimeout, err)
		case stalls >= 20:
			t.Fatalf("the test stalled past the idle timeout %d times: it cannot keep a connection busy here", stalls)
		default: // the test stalled past the timeout and the cut was right
			stalls++
			busy.Close()
			connect()
			exchanges = 0
		}
	}
	// The idle connection was cut long ago; the deadline only bounds a
	// test that would otherwise hang.
	idle.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := idle.R.ReadByte(); err == nil {
		t.Fatal("idle connection delivered data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle connection still open 30s after a 300ms idle timeout")
	}
}
