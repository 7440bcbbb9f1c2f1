//go:build linux

package loop

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/dcerpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A backend greets with its name, echoes, and answers the client's FIN
// with its own; the client reaches it from the source address it was
// given, and source addresses of different clients differ and skip .0
// and .255.
func TestBackendGreetsEchoesFromSource(t *testing.T) {
	b := NewBackend("cas9", "127.0.0.51")
	defer b.Close()
	port, err := b.ListenPort(0)
	if err != nil {
		t.Fatal(err)
	}
	src := SourceIP(7, 300)
	if src != "127.7.1.51" || SourceIP(7, 249) != "127.7.0.250" || SourceIP(7, 250) != "127.7.1.1" {
		t.Fatalf("source addresses %s %s %s", src, SourceIP(7, 249), SourceIP(7, 250))
	}
	c, err := Dialer(src, 2*time.Second).Dial("tcp", net.JoinHostPort("127.0.0.51", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != src {
		t.Fatalf("dialled from %s, want %s", got, src)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "cas9\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(r); err != nil || string(rest) != "ping" {
		t.Fatalf("echo %q, %v", rest, err)
	}
}

// The RPC port accepts a bind of EMSMDB and answers every request with
// the backend's name; Close ends an open RPC connection, as it does an
// echo one.
func TestBackendServesRPC(t *testing.T) {
	b := NewBackend("cas7", "127.0.0.51")
	defer b.Close()
	port, err := b.ListenRPC(0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dialer(SourceIP(7, 1), 2*time.Second).Dial("tcp", net.JoinHostPort("127.0.0.51", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cl := dcerpc.NewClient(c)
	if err := cl.Bind(dcerpc.EMSMDB); err != nil {
		t.Fatalf("bind: %v", err)
	}
	for i := range 3 {
		if stub, _, err := cl.Call(11, []byte("stub")); err != nil || string(stub) != "cas7" {
			t.Fatalf("call %d: %q, %v", i, stub, err)
		}
	}
	b.Close()
	// A deadline would also end the call: only the backend's close counts.
	if _, _, err := cl.Call(11, nil); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the RPC connection is still open after Close: %v", err)
	}
}
