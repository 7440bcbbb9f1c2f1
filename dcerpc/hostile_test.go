package dcerpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fragment is a response fragment of call 2 with flags and stub.
func fragment(flags byte, stub []byte) []byte {
	b := header(TypeResponse, 2, 8+len(stub))
	b[3] = flags
	b = binary.LittleEndian.AppendUint32(b, uint32(len(stub))) // alloc_hint
	b = append(b, 0, 0, 0, 0)                                  // context id, cancel count, reserved
	return append(b, stub...)
}

// endless is the hostile endpoint mapper's answer: 24-byte fragments,
// none of them the last, as many as the client will take.
func endless(c net.Conn) {
	batch := bytes.Repeat(fragment(0, nil), 1024)
	if _, err := c.Write(fragment(flagFirstFrag, nil)); err != nil {
		return
	}
	for {
		if _, err := c.Write(batch); err != nil {
			return
		}
	}
}

// hostileEPM is an endpoint mapper on host that reads a bind and calls
// answer with the connection; it returns its port.
func hostileEPM(t *testing.T, host string, answer func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if _, err := ReadPDU(c, nil); err == nil {
					answer(c)
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A response is read in at most maxFragments fragments: the last one
// allowed ends it, one more is malformed, whatever (here nothing) the
// fragments carry.
func TestFragmentBound(t *testing.T) {
	for _, n := range []int{1, maxFragments, maxFragments + 1} {
		var stream []byte
		for i := range n {
			flags := byte(0)
			if i == 0 {
				flags |= flagFirstFrag
			}
			if i == n-1 {
				flags |= flagLastFrag
			}
			stream = append(stream, fragment(flags, []byte{byte(i)})...)
		}
		stub, _, err := ReadResponse(bytes.NewReader(stream), 2)
		switch {
		case n <= maxFragments && (err != nil || len(stub) != n):
			t.Errorf("%d fragments: %d bytes, %v", n, len(stub), err)
		case n > maxFragments && !errors.Is(err, ErrMalformed):
			t.Errorf("%d fragments were read: %d bytes, %v", n, len(stub), err)
		}
	}
}

// An endpoint mapper that answers ept_map with endless empty fragments,
// never marked last, costs the reader maxFragments of them (plus what one
// buffered read brings), not everything it can read before the deadline,
// and is malformed, not slow.
func TestEndlessFragmentsAreBounded(t *testing.T) {
	port := hostileEPM(t, "127.0.0.41", endless)
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.41", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(Bind(1, EPM))
	wire := &countingReader{r: c}
	_, _, err = ReadResponse(bufio.NewReaderSize(wire, maxFrag), 2)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "fragments") {
		t.Errorf("endless fragments: %v", err)
	}
	if limit := maxFragments*24 + maxFrag; wire.n > limit {
		t.Errorf("read %d bytes of fragments, want at most %d", wire.n, limit)
	}
}

// The check itself (Lookup, as the rpc health check calls it) fails on
// endless fragments as malformed, before its deadline.
func TestLookupEndsOnEndlessFragments(t *testing.T) {
	ack, err := os.ReadFile("testdata/samba-bind-ack.bin")
	if err != nil {
		t.Fatal(err)
	}
	port := hostileEPM(t, "127.0.0.42", func(c net.Conn) {
		if _, err := c.Write(ack); err != nil {
			return
		}
		if _, err := ReadPDU(c, nil); err == nil { // the ept_map request
			endless(c)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Lookup(ctx, nil, net.JoinHostPort("127.0.0.42", strconv.Itoa(port)), EMSMDB)
	if !errors.Is(err, ErrMalformed) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Lookup against endless fragments: %v", err)
	}
}

// A check that is cancelled ends its exchange and says it was cancelled,
// however long its connection's deadline.
func TestCancelEndsTheCheck(t *testing.T) {
	bound := make(chan struct{})
	port := hostileEPM(t, "127.0.0.43", func(c net.Conn) {
		close(bound)
		io.Copy(io.Discard, c) // never answers
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Lookup(ctx, nil, net.JoinHostPort("127.0.0.43", strconv.Itoa(port)), EMSMDB)
		done <- err
	}()
	<-bound
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled check ended with %v", err)
	}
}
