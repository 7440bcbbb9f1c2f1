//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
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
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("half-closed connection not cut: %v after %s", err, time.Since(start))
	}
	if time.Since(start) < 150*time.Millisecond {
		t.Fatalf("cut after %s, before half_close_timeout", time.Since(start))
	}
}

// idle_timeout closes a connection with no traffic and spares one with
// traffic, measured by the kernel rather than by a deadline per read.
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
	busy, err := lbtest.Connect(lbtest.ClientIP(14), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		busy.Write([]byte("x\n"))
		busy.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := busy.R.ReadString('\n'); err != nil {
			t.Fatalf("busy connection cut by the idle timeout: %v", err)
		}
	}
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.R.ReadByte(); err == nil {
		t.Fatal("idle connection delivered data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle connection still open 1s after a 300ms idle timeout")
	}
}
