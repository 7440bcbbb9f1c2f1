package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stickylb/stickylb/dcerpc"
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

// rpcDial dials host:port and binds svc's interface there, as the
// fleet does.
func rpcDial(t *testing.T, host string, port int, svc Service) *clientConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &clientConn{Conn: nc, r: bufio.NewReader(nc), svc: svc}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if err := c.bind(); err != nil {
		t.Fatalf("bind %s on port %d: %v", svc, port, err)
	}
	return c
}

// call sends f on a fresh connection to svc's port and returns the
// reply; an error reply or a fault is a *StatusError.
func call(t *testing.T, host string, port int, svc Service, f Frame) (Frame, error) {
	t.Helper()
	c := rpcDial(t, host, port, svc)
	defer c.Close()
	return exchange(t, c, f)
}

func exchange(t *testing.T, c *clientConn, f Frame) (Frame, error) {
	t.Helper()
	r, err := c.send(f)
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return Frame{}, se
	case err != nil:
		t.Fatal(err)
	case r.Type == TypeError:
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
	r, err := call(t, host, port, ClientAccess, Frame{Type: TypeLogon, Payload: appendStr(nil, "mbx1")})
	if err != nil || r.Type != TypeLogonOK {
		t.Fatalf("logon: %v %v", r, err)
	}
	return binary.BigEndian.Uint64(r.Payload)
}

func op(h uint64) Frame { return Frame{Type: TypeOp, Payload: binary.BigEndian.AppendUint64(nil, h)} }

// A session lives on the CAS that opened it: its Address Book port shares
// it, another CAS answers MAPI_E_NETWORK_ERROR, exactly 0x80040115. The
// endpoint mapper hands out the two ports for EMSMDB and NSPI to
// package dcerpc's own client, the rpc health check's.
func TestSessionsAreLocalToTheirCAS(t *testing.T) {
	ports := freePorts(t, "127.0.0.41", "127.0.0.42")
	startCAS(t, "cas1", "127.0.0.41", ports)
	other := startCAS(t, "cas2", "127.0.0.42", ports)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for i, iface := range []dcerpc.Syntax{dcerpc.EMSMDB, dcerpc.NSPI} {
		if p, err := dcerpc.Check(ctx, nil, "127.0.0.41", ports[0], iface, nil); err != nil || p != ports[1+i] {
			t.Fatalf("rpc check of %s: port %d, %v; want %d", iface, p, err, ports[1+i])
		}
	}
	h := logon(t, "127.0.0.41", ports[1])
	for i, p := range ports[1:] {
		if _, err := call(t, "127.0.0.41", p, []Service{ClientAccess, AddressBook}[i], op(h)); err != nil {
			t.Fatalf("op on cas1 port %d: %v", p, err)
		}
	}
	_, err := call(t, "127.0.0.42", ports[1], ClientAccess, op(h))
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
	if _, err := call(t, "127.0.0.45", idlePorts[1], ClientAccess, op(h)); !errors.As(err, &se) || se.Status != MAPINetworkError {
		t.Fatalf("op on an idled-out session: %v", err)
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
	f.Add([]byte{'M', 'A', TypeLogoff, 0, 0})
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
// must answer or close, never panic or hang. The seeds are a fleet's
// conversations on each port, and lab frames without DCE/RPC.
func FuzzServe(f *testing.F) {
	logonFrame := AppendFrame(nil, Frame{Type: TypeLogon, Payload: appendStr(nil, "x")})
	opFrame := AppendFrame(nil, op(1))
	f.Add(slices.Concat(dcerpc.Bind(1, dcerpc.EMSMDB), dcerpc.Request(2, opEcDoConnectEx, logonFrame),
		dcerpc.Request(3, opEcDoRpcExt2, opFrame)), uint8(1))
	f.Add(slices.Concat(dcerpc.Bind(1, dcerpc.NSPI), dcerpc.Request(2, opNspiGetProps, opFrame)), uint8(2))
	f.Add(slices.Concat(dcerpc.Bind(1, dcerpc.EPM), dcerpc.Request(2, dcerpc.OpMap, dcerpc.MapRequest(dcerpc.EMSMDB)),
		dcerpc.Request(3, dcerpc.OpMap, dcerpc.MapRequest(dcerpc.NSPI))), uint8(0))
	f.Add(logonFrame, uint8(1))
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
