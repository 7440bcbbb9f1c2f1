package health

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func port(t *testing.T, addr string) (string, int) {
	ap := netip.MustParseAddrPort(addr)
	return ap.Addr().String(), int(ap.Port())
}

func probeOnce(p Probe, host string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return p.Probe(ctx, host)
}

// A send-expect probe passes on a matching prefix or regexp and fails,
// saying why, on a wrong reply.
func TestSendExpect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				if strings.HasPrefix(string(buf[:n]), "PING") {
					c.Write([]byte("+PONG server cas1\r\n"))
				} else {
					c.Write([]byte("-ERR\r\n"))
				}
			}()
		}
	}()
	host, p := port(t, ln.Addr().String())
	if err := probeOnce(SendExpect{Ports: []int{p}, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}, host); err != nil {
		t.Errorf("matching prefix failed: %v", err)
	}
	if err := probeOnce(SendExpect{Ports: []int{p}, Send: []byte("PING\r\n"), Regexp: regexp.MustCompile(`server cas\d`)}, host); err != nil {
		t.Errorf("matching regexp failed: %v", err)
	}
	err = probeOnce(SendExpect{Ports: []int{p}, Send: []byte("HELLO\r\n"), Expect: []byte("+PONG")}, host)
	if err == nil || !strings.Contains(err.Error(), `does not start with "+PONG"`) {
		t.Errorf("wrong reply: %v", err)
	}
}

// An HTTP(S) probe passes a healthy page and fails, saying why, on a bad
// status or a body that does not match.
func TestHTTPAndTLS(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/owa/auth/logon.aspx":
			w.Write([]byte("200 OK cas1"))
		default:
			http.Error(w, "nope", 503)
		}
	})
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewTLSServer(h)
	defer secure.Close()
	host, p := port(t, plain.Listener.Addr().String())
	ok := HTTP{Ports: []int{p}, Method: "GET", Path: "/owa/auth/logon.aspx", StatusMin: 200, StatusMax: 299, Body: regexp.MustCompile("OK")}
	if err := probeOnce(ok, host); err != nil {
		t.Errorf("healthy http: %v", err)
	}
	bad := ok
	bad.Path = "/other"
	if err := probeOnce(bad, host); err == nil || !strings.Contains(err.Error(), "status 503, want 200-299") {
		t.Errorf("503: %v", err)
	}
	body := ok
	body.Body = regexp.MustCompile("cas2")
	if err := probeOnce(body, host); err == nil || !strings.Contains(err.Error(), "body does not match") {
		t.Errorf("body: %v", err)
	}
	shost, sp := port(t, secure.Listener.Addr().String())
	https := ok
	https.Ports, https.TLS = []int{sp}, true
	if err := probeOnce(https, shost); err != nil {
		t.Errorf("https without verify: %v", err)
	}
	https.Verify = true
	if err := probeOnce(https, shost); err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Errorf("https with verify against a self-signed cert: %v", err)
	}
	if err := probeOnce(TLS{Ports: []int{sp}, SNI: "cas1.example"}, shost); err != nil {
		t.Errorf("tls: %v", err)
	}
	if err := probeOnce(TLS{Ports: []int{p}}, host); err == nil {
		t.Errorf("tls handshake with a plain http server passed")
	}
}

// epmBind is the DCE/RPC bind to the endpoint mapper interface that
// docs/config.md gives for Exchange ("A hung CAS").
const epmBind = "05 00 0b 03 10 00 00 00 48 00 00 00 01 00 00 00 d0 16 d0 16 00 00 00 00 01 00 00 00 00 00 01 00 " +
	"08 83 af e1 1f 5d c9 11 91 a4 08 00 2b 14 a0 fa 03 00 00 00 04 5d 88 8a eb 1c c9 11 9f e8 08 00 2b 10 48 60 02 00 00 00"

// A CAS that accepts connections but never answers passes a TCP check
// and fails the documented send-expect check; one whose endpoint mapper
// answers a bind with a bind_ack passes both.
func TestHungServiceNeedsSendExpect(t *testing.T) {
	bind, _ := hex.DecodeString(strings.ReplaceAll(epmBind, " ", ""))
	if len(bind) != 72 || bind[8] != 72 {
		t.Fatalf("the documented bind is %d bytes, says %d", len(bind), bind[8])
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	serve := func(host string, answer bool) int {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					req := make([]byte, 72)
					if _, err := io.ReadFull(c, req); err != nil || !answer || !bytes.Equal(req, bind) {
						io.Copy(io.Discard, c) // hung: reads, never answers
						return
					}
					c.Write([]byte{5, 0, 0x0c, 3, 0x10, 0, 0, 0}) // bind_ack header
				})
			}
		})
		return ln.Addr().(*net.TCPAddr).Port
	}
	live, hung := serve("127.0.0.25", true), serve("127.0.0.26", false)
	check := func(port int) Probe { return SendExpect{Ports: []int{port}, Send: bind, Expect: []byte{5, 0, 0x0c}} }
	if err := probeOnce(check(live), "127.0.0.25"); err != nil {
		t.Fatalf("a live endpoint mapper fails the bind check: %v", err)
	}
	if err := probeOnce(TCP{Ports: []int{hung}}, "127.0.0.26"); err != nil {
		t.Fatalf("the hung server should pass a TCP check: %v", err)
	}
	if err := probeOnce(check(hung), "127.0.0.26"); err == nil {
		t.Fatal("a hung endpoint mapper passes the bind check")
	}
}
