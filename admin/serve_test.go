//go:build linux

package admin

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve serves e's API on a loopback listener with Serve.
func (e *env) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := e.api.Serve(ln, nil)
	t.Cleanup(func() { ep.Close() })
	return ln.Addr().String()
}

// hold opens n connections to addr that begin a request and never
// finish it, closed when the test ends.
func hold(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET /api/pins HTTP/1.1\r\n"))
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// Four times MaxConns connections that send half a request and wait do
// not keep /readyz or /healthz out: each new connection closes the
// oldest that is not being answered. With a plain limit of MaxConns
// connections, the 257th waited for the held ones' header timeout (5 s
// each, 64 at a time).
func TestServeAnswersWhileConnectionsHeld(t *testing.T) {
	e := setup(t, "")
	addr := e.serve(t)
	hold(t, addr, 4*MaxConns)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/readyz", "/healthz", "/readyz"} {
		start := time.Now()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("%s with %d connections held: %v", path, 4*MaxConns, err)
		}
		resp.Body.Close()
		if took := time.Since(start); took > time.Second {
			t.Fatalf("%s with %d connections held took %v", path, 4*MaxConns, took)
		}
	}
}

// A connection being answered is never closed to make room: with every
// slot answering a request whose handler is blocked, a new connection
// waits (in the listen queue) until one of them finishes, then is
// served, and every answer arrives whole.
func TestServeNeverCutsAnAnswer(t *testing.T) {
	release := make(chan struct{})
	inHandler := make(chan struct{}, MaxConns)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inHandler <- struct{}{}
			<-release
		}
		io.WriteString(w, strings.Repeat("x", 1000))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := newLimitListener(ln, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ll.answering(r); slow(w, r) }),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		ConnState:   ll.state}
	go srv.Serve(ll)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	got := make(chan string, 5)
	get := func(path string) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}
	for range 4 {
		go get("/slow")
	}
	for range 4 {
		<-inHandler
	}
	go get("/fast")
	select {
	case s := <-got:
		t.Fatalf("a call answered while every slot was answering: %.40q", s)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	for range 5 {
		if s := <-got; s != strings.Repeat("x", 1000) {
			t.Fatalf("an answer was cut: %.60q", s)
		}
	}
}

// The admin socket: mode 0660 from the moment its path exists; a
// changing call over it needs no token where TCP does (the file's
// permissions decide who connects); a second ListenSocket on a path that
// answers is refused; Remove leaves a path another socket took over.
func TestAdminSocket(t *testing.T) {
	e := setup(t, "0123456789abcdef0123")
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	ep := e.api.Serve(s, nil)
	t.Cleanup(func() { ep.Close() })
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != SocketMode || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file: %v %v", fi, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("the socket's folder holds %d entries, want the socket alone: %v", len(entries), entries)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
	req, _ := http.NewRequest("POST", "http://localhost/api/backends/cas/cas2/state", bytes.NewBufferString(`{"state":"drain"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(RequestHeader, "1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("drain over the socket without a token: %d", resp.StatusCode)
	}
	if code := e.do("POST", "/api/backends/cas/cas2/state", "", `{"state":"ready"}`, nil); code != 401 {
		t.Fatalf("the same call over TCP without the token: %d, want 401", code)
	}
	if _, err := ListenSocket(path); err == nil || !strings.Contains(err.Error(), "another process serves it") {
		t.Fatalf("a second socket on a path that answers: %v", err)
	}
	os.Remove(path)
	other, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Remove took the path another socket has: %v", err)
	}
}
