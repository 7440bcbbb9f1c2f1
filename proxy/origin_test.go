//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/stickylb/stickylb/kit/lbtest"
	"github.com/stickylb/stickylb/pool"
)

func v2Header(t *testing.T, client, dest string) []byte {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dest)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// From a trusted source, the client a PROXY header (v1 or v2) names is
// the client: the dial step is told it and it is what the pin is keyed
// on. Bytes sent in the same segment right behind the header reach the
// backend first.
func TestProxyProtocolAccepted(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	d := &recordingDialer{}
	r := route(bs, ports[0], d)
	r.Identify = (&ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}).Identify
	l := serve(t, r)
	for _, c := range []struct {
		header []byte
		client string
	}{
		{[]byte("PROXY TCP4 10.1.2.3 10.9.9.9 50000 135\r\n"), "10.1.2.3:50000"},
		{v2Header(t, "[2001:db8::7]:50001", "[2001:db8::1]:135"), "[2001:db8::7]:50001"},
	} {
		conn, err := lbtest.Dial(lbtest.ClientIP(9600), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(append(c.header, "early\n"...))
		br := bufio.NewReader(conn)
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		greeting, _ := br.ReadString('\n')
		echo, err := br.ReadString('\n')
		conn.Close()
		if err != nil || echo != "early\n" {
			t.Fatalf("%s: greeting %q, echo %q, %v: the bytes behind the header did not reach the backend", c.client, greeting, echo, err)
		}
		d.mu.Lock()
		got := d.clients[len(d.clients)-1]
		d.mu.Unlock()
		if got.String() != c.client {
			t.Fatalf("the dial step was told %s, the header said %s", got, c.client)
		}
	}
}

// A source outside proxy_trusted, a malformed or truncated header, and a
// header that never comes are each refused, counted by reason, and never
// reach a backend.
func TestProxyProtocolRefused(t *testing.T) {
	bs, ports := lbtest.StartBackends(t, casHosts, 1)
	d := &recordingDialer{}
	obs := &recorder{}
	r := route(bs, ports[0], d)
	r.Observer = obs.observer()
	pp := &ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.1.0.0/16")}, Timeout: 200 * time.Millisecond}
	r.Identify = pp.Identify
	l := serve(t, r)
	try := func(src, send string, closeAfter bool) {
		conn, err := lbtest.Dial(src, l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte(send))
		if closeAfter {
			conn.CloseWrite()
		}
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if b, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
			t.Fatalf("from %s sending %q: a backend answered %q", src, send, b)
		}
	}
	try("127.2.0.1", "PROXY TCP4 10.1.2.3 10.9.9.9 50000 135\r\n", false) // untrusted
	try(lbtest.ClientIP(9601), "PROXY TCP4 not-an-address\r\n", false)
	try(lbtest.ClientIP(9602), "PROXY TCP4 10.1.2.3", true)
	start := time.Now()
	try(lbtest.ClientIP(9603), "", false) // silent
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a silent connection was held %s with a 200ms header timeout", took)
	}
	want := []Refusal{RefusedProxyUntrusted, RefusedProxyHeader, RefusedProxyHeader, RefusedProxyHeader}
	lbtest.Eventually(t, 2*time.Second, "four refusals counted", func() bool { return len(obs.list()) == 4 })
	for i, w := range want {
		if got := obs.list()[i]; got != w {
			t.Errorf("refusal %d counted as %s, want %s", i, got, w)
		}
	}
	if len(d.clients) != 0 {
		t.Fatalf("%d refused connections reached the dial step", len(d.clients))
	}
}

// With SendProxy the backend reads a PROXY header naming the client
// before the client's first byte.
func TestSendProxyToBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.14:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	r := route(nil, port, nil)
	r.Pool = pool.New("p", 0, []pool.Spec{{Name: "x", Host: "127.0.0.14", Weight: 1}})
	r.SendProxy = 1
	l := serve(t, r)
	conn, err := lbtest.Dial("127.3.4.5", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case line := <-got:
		want := "PROXY TCP4 127.3.4.5 127.0.0.1 "
		if !strings.HasPrefix(line, want) || !strings.HasSuffix(line, " "+l.Addr().String()[strings.LastIndexByte(l.Addr().String(), ':')+1:]+"\r\n") {
			t.Fatalf("backend read %q, want %q... ending in the listener's port", line, want)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the backend read no PROXY header")
	}
}

// No bytes read as a PROXY header crash the reader; what it accepts
// leaves as early bytes only what followed the header.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 10.1.2.3 10.9.9.9 50000 135\r\nhello"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 50001 135\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x0a\x01\x02\x03\x0a\x09\x09\x09\xc3\x50\x00\x87rest"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Add([]byte("PROXY TCP4 10.1.2.3"))
	o := Origin{Client: netip.MustParseAddrPort("127.0.0.1:1"), Dest: netip.MustParseAddrPort("127.0.0.1:2")}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readHeader(bufio.NewReader(bytes.NewReader(data)), o)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(data, got.Early) {
			t.Fatalf("early bytes %q are not the end of the input %q", got.Early, data)
		}
		if !got.Client.IsValid() {
			t.Fatalf("accepted a header naming no client: %+v", got)
		}
	})
}
