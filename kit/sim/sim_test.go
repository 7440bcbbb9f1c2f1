package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startCAS starts a simulated CAS on host with three free ports. Its
// sessions idle out after a minute: a test that wants them to idle out
// sooner starts its own (startCASIdle), so no other test can lose a
// session to a stall of the machine.
func startCAS(t *testing.T, name, host string, ports []int) *CAS {
	t.Helper()
	return startCASIdle(t, name, host, ports, time.Minute)
}

func startCASIdle(t *testing.T, name, host string, ports []int, idle time.Duration) *CAS {
	t.Helper()
	c, err := StartCAS(CASConfig{Name: name, Host: host, EPMPort: ports[0], RCAPort: ports[1], ABPort: ports[2],
		SessionIdle: idle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func freePorts(t *testing.T, hosts ...string) []int {
	t.Helper()
	var ports []int
	for len(ports) < 3 {
		ln, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, h := range hosts {
			l2, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		if ok {
			ports = append(ports, p)
		}
	}
	return ports
}

func call(t *testing.T, host string, port int, f Frame) (Frame, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := WriteFrame(c, f); err != nil {
		t.Fatal(err)
	}
	r, err := ReadFrame(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Type == TypeError {
		se, perr := ParseError(r.Payload)
		if perr != nil {
			t.Fatal(perr)
		}
		return r, se
	}
	return r, nil
}

func logon(t *testing.T, host string, port int) uint64 {
	t.Helper()
	r, err := call(t, host, port, Frame{Type: TypeLogon, Payload: appendStr(nil, "mbx1")})
	if err != nil || r.Type != TypeLogonOK {
		t.Fatalf("logon: %v %v", r, err)
	}
	return binary.BigEndian.Uint64(r.Payload)
}

func op(h uint64) Frame { return Frame{Type: TypeOp, Payload: binary.BigEndian.AppendUint64(nil, h)} }

// A session lives on the CAS that opened it: its Address Book port shares
// it, another CAS answers MAPI_E_NETWORK_ERROR, exactly 0x80040115.
func TestSessionsAreLocalToTheirCAS(t *testing.T) {
	ports := freePorts(t, "127.0.0.41", "127.0.0.42")
	startCAS(t, "cas1", "127.0.0.41", ports)
	other := startCAS(t, "cas2", "127.0.0.42", ports)

	r, err := call(t, "127.0.0.41", ports[0], Frame{Type: TypeLookup})
	if err != nil || r.Type != TypePorts || int(binary.BigEndian.Uint16(r.Payload)) != ports[1] || int(binary.BigEndian.Uint16(r.Payload[2:])) != ports[2] {
		t.Fatalf("endpoint mapper answered %v %v", r, err)
	}
	h := logon(t, "127.0.0.41", ports[1])
	for _, p := range ports[1:] {
		if _, err := call(t, "127.0.0.41", p, op(h)); err != nil {
			t.Fatalf("op on cas1 port %d: %v", p, err)
		}
	}
	_, err = call(t, "127.0.0.42", ports[1], op(h))
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 0x80040115 || se.Server != "cas2" {
		t.Fatalf("op on the wrong CAS: %v, want MAPI_E_NETWORK_ERROR from cas2", err)
	}
	if other.Stats().NetworkErrors != 1 {
		t.Errorf("cas2 counted %d network errors", other.Stats().NetworkErrors)
	}
	// Sessions time out server-side. The CAS checks a session's age when
	// it is used, so the sleep is a clock wait: the op after it finds the
	// session older than 300ms however long the machine took.
	idlePorts := freePorts(t, "127.0.0.45")
	startCASIdle(t, "cas3", "127.0.0.45", idlePorts, 300*time.Millisecond)
	h = logon(t, "127.0.0.45", idlePorts[1])
	time.Sleep(400 * time.Millisecond)
	if _, err := call(t, "127.0.0.45", idlePorts[1], op(h)); !errors.As(err, &se) || se.Status != MAPINetworkError {
		t.Fatalf("op on an idled-out session: %v", err)
	}
}

// Malformed input gets an error frame and a close; other clients and the
// server carry on, and the error is counted.
func TestMalformedInput(t *testing.T) {
	ports := freePorts(t, "127.0.0.43")
	cas := startCAS(t, "cas1", "127.0.0.43", ports)
	h := logon(t, "127.0.0.43", ports[1])
	bystander, err := net.Dial("tcp", net.JoinHostPort("127.0.0.43", strconv.Itoa(ports[1])))
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close()
	for i, bad := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{'M', 'A', TypeOp, 0xff, 0xff},              // length too large
		{'M', 'A', TypeOp, 0, 3, 1, 2, 3},           // handle too short
		{'M', 'A', TypeLookup, 0, 0},                // wrong service for this port
		{'M', 'A', TypeLogon, 0, 4, 9, 'a', 'b', 0}, // string longer than its frame
	} {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.43", strconv.Itoa(ports[1])))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(bad)
		r, err := ReadFrame(c, nil)
		if err != nil || r.Type != TypeError {
			// The logon with a bad string is a logon failure, not fatal.
			t.Fatalf("case %d: reply %v %v, want an error frame", i, r, err)
		}
		if i < 4 {
			if _, err := ReadFrame(c, nil); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && err == nil {
				t.Fatalf("case %d: connection still open after a malformed frame", i)
			}
		}
		c.Close()
	}
	bystander.SetDeadline(time.Now().Add(2 * time.Second))
	WriteFrame(bystander, op(h))
	if r, err := ReadFrame(bystander, nil); err != nil || r.Type != TypeOpOK {
		t.Fatalf("bystander's op after the bad input: %v %v", r, err)
	}
	if n := cas.Stats().ProtocolErrors; n != 4 {
		t.Errorf("protocol errors counted: %d, want 4", n)
	}
}

// Frames read back as written, an oversized one is refused at writing,
// and an error frame carries status, server and message.
func TestFrameRoundTrip(t *testing.T) {
	f := Frame{Type: TypeOp, Payload: []byte("hello")}
	var b bytes.Buffer
	if err := WriteFrame(&b, f); err != nil {
		t.Fatal(err)
	}
	g, err := ReadFrame(&b, nil)
	if err != nil || g.Type != f.Type || !bytes.Equal(g.Payload, f.Payload) {
		t.Fatalf("round trip: %v %v", g, err)
	}
	if err := WriteFrame(&b, Frame{Payload: make([]byte, MaxPayload+1)}); err == nil {
		t.Fatal("wrote an oversized frame")
	}
	se, err := ParseError(ErrorFrame(MAPINetworkError, "cas1", "gone").Payload)
	if err != nil || se.Status != MAPINetworkError || se.Server != "cas1" || se.Msg != "gone" {
		t.Fatalf("error frame: %v %v", se, err)
	}
}

// The fleet against one CAS directly: every operation succeeds.
func TestFleetDirect(t *testing.T) {
	ports := freePorts(t, "127.0.0.44")
	c, err := StartCAS(CASConfig{Name: "cas1", Host: "127.0.0.44", EPMPort: ports[0], RCAPort: ports[1], ABPort: ports[2]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rep := NewFleet(FleetConfig{Target: "127.0.0.44", EPMPort: ports[0], Sources: []string{"127.2.9.1", "127.2.9.2"},
		Sessions: 6, Duration: 700 * time.Millisecond, OpInterval: 10 * time.Millisecond}).Run(context.Background())
	if rep.Ops < 50 || rep.OK != rep.Ops || rep.MAPINetworkErrors != 0 || rep.ConnErrors != 0 {
		t.Fatalf("direct fleet: %+v", rep)
	}
	if rep.SessionsPerCAS["cas1"] != 6 || rep.Logons != 6 || rep.Latency.P50 <= 0 {
		t.Fatalf("direct fleet: sessions %v, logons %d, p50 %v", rep.SessionsPerCAS, rep.Logons, rep.Latency.P50)
	}
}

// No bytes crash the frame reader, and a frame it reads re-encodes to the
// same bytes.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{'M', 'A', TypeOp, 0, 2, 1, 2})
	f.Add([]byte{'M', 'A', TypeLookup, 0, 0})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ReadFrame(bytes.NewReader(data), nil)
		if err != nil {
			return
		}
		enc := AppendFrame(nil, fr)
		if !bytes.Equal(enc, data[:len(enc)]) {
			t.Fatalf("re-encoding %x gave %x", data[:len(enc)], enc)
		}
	})
}

// FuzzServe feeds arbitrary bytes to a CAS connection on each service: it
// must answer or close, never panic or hang.
func FuzzServe(f *testing.F) {
	f.Add([]byte{'M', 'A', TypeLogon, 0, 2, 1, 'x'}, uint8(1))
	f.Add([]byte{'M', 'A', TypeOp, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1}, uint8(2))
	f.Add([]byte{'M', 'A', TypeLookup, 0, 0, 'M', 'A'}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, svc uint8) {
		c := &CAS{cfg: CASConfig{Name: "fuzz", SessionIdle: time.Minute, ConnIdle: time.Second, RCAPort: 1, ABPort: 2, Log: slog.New(slog.DiscardHandler)},
			sessions: map[uint64]*session{}, conns: map[net.Conn]struct{}{}}
		client, server := net.Pipe()
		c.wg.Add(1)
		go c.serve(server, Service(svc%3))
		go io.Copy(io.Discard, client)
		go func() {
			client.SetWriteDeadline(time.Now().Add(time.Second))
			client.Write(data)
			client.Close()
		}()
		done := make(chan struct{})
		go func() { c.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("serve did not end")
		}
	})
}
