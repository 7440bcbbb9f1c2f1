package sim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// rawConn dials svc's port without a bind.
func rawConn(t *testing.T, host string, port int, svc Service) *clientConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	return &clientConn{Conn: nc, r: bufio.NewReader(nc), svc: svc}
}

// closed says whether the server closed c with nothing more to say.
func closed(c *clientConn) bool {
	n, err := c.r.Read(make([]byte, 1))
	return n == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed))
}

// Malformed input is answered as an RPC runtime answers it, and counted:
// bytes that are not DCE/RPC and an oversized fragment close the
// connection unanswered; a request before a bind gets a fault
// (nca_s_unk_if) and a close; a stub that is not a lab frame, or a frame of another
// operation, MAPI_E_CALL_FAILED and a close; an operation the interface
// lacks, a fault on a connection that stays. Other clients and the
// server carry on.
func TestMalformedInput(t *testing.T) {
	ports := freePorts(t, "127.0.0.43")
	cas := startCAS(t, "cas1", "127.0.0.43", ports)
	h := logon(t, "127.0.0.43", ports[1])
	bystander := rpcDial(t, "127.0.0.43", ports[1], ClientAccess)
	for i, raw := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{5, 0, dcerpc.TypeRequest, 3, 0x10, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0},
	} {
		c := rawConn(t, "127.0.0.43", ports[1], ClientAccess)
		c.Write(raw)
		if !closed(c) {
			t.Fatalf("case %d: connection open, or answered, after %q", i, raw)
		}
	}
	// A request with no bind is what a CAS sees of a flow a balancer
	// moved to it: the fleet reads its fault as MAPI reports a failed
	// call, MAPI_E_NETWORK_ERROR.
	c := rawConn(t, "127.0.0.43", ports[1], ClientAccess)
	if _, err := c.send(op(h)); !hasStatus(err, dcerpc.FaultUnknownIf) || !hasStatus(err, MAPINetworkError) || !closed(c) {
		t.Fatalf("a request before the bind: %v", err)
	}
	for i, f := range []Frame{
		{Type: TypeOp, Payload: []byte{1, 2, 3}}, // handle too short
		{Type: TypeLogon, Payload: appendStr(nil, "mbx1")},
	} {
		c := rpcDial(t, "127.0.0.43", ports[1], ClientAccess)
		stub, _, err := c.rpc(opEcDoRpcExt2, AppendFrame(nil, f))
		if err != nil || !closed(c) {
			t.Fatalf("case %d: %v, or the connection stayed open", i, err)
		}
		if r, err := ReadFrame(bytes.NewReader(stub), nil); err != nil || r.Type != TypeError {
			t.Fatalf("case %d: reply %v %v, want MAPI_E_CALL_FAILED", i, r, err)
		}
	}
	c = rpcDial(t, "127.0.0.43", ports[1], ClientAccess)
	if _, _, err := c.rpc(42, nil); !hasStatus(err, dcerpc.FaultOpRange) {
		t.Fatalf("operation 42: %v, want fault op_rng_error", err)
	}
	if _, err := exchange(t, c, op(h)); err != nil {
		t.Fatalf("the same connection after the fault: %v", err)
	}
	if _, err := exchange(t, bystander, op(h)); err != nil {
		t.Fatalf("bystander's op after the bad input: %v", err)
	}
	if n := cas.Stats().ProtocolErrors; n != 6 {
		t.Errorf("protocol errors counted: %d, want 6", n)
	}
}

// hasStatus says whether err is a reply or fault of status.
func hasStatus(err error, status uint32) bool {
	var se *StatusError
	var f dcerpc.Fault
	return (errors.As(err, &se) && (se.Status == status || se.Fault == status)) || (errors.As(err, &f) && uint32(f) == status)
}

// Each port binds its own interface only: EMSMDB on RPC Client Access,
// NSPI on the Address Book, the endpoint mapper's on the endpoint
// mapper; any other bind is rejected (abstract syntax not supported) and
// counted, on a connection that stays open. ept_map of an interface the
// CAS does not serve says not registered; a logon without a mailbox is
// MAPI_E_LOGON_FAILED and not fatal.
func TestBindsAndLookups(t *testing.T) {
	ports := freePorts(t, "127.0.0.46")
	cas := startCAS(t, "cas1", "127.0.0.46", ports)
	for i, svc := range []Service{EndpointMapper, ClientAccess, AddressBook} {
		for _, iface := range []Service{EndpointMapper, ClientAccess, AddressBook} {
			c := rawConn(t, "127.0.0.46", ports[i], iface)
			err := c.bind()
			if (iface == svc) != (err == nil) || (err != nil && !errors.Is(err, dcerpc.ErrBindRejected)) {
				t.Errorf("bind %s on the %s port: %v", iface.Interface(), svc, err)
			}
		}
	}
	if n := cas.Stats().RejectedBinds; n != 6 {
		t.Errorf("rejected binds counted: %d, want 6", n)
	}
	srvsvc, _ := dcerpc.ParseUUID("4b324fc8-1670-01d3-1278-5a47bf6ee188")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	epm := net.JoinHostPort("127.0.0.46", strconv.Itoa(ports[0]))
	if _, err := dcerpc.Lookup(ctx, nil, epm, dcerpc.Syntax{UUID: srvsvc, Major: 3}); !errors.Is(err, dcerpc.ErrNotRegistered) {
		t.Fatalf("ept_map of srvsvc: %v, want not registered", err)
	}
	if _, err := dcerpc.Lookup(ctx, nil, epm, dcerpc.Syntax{UUID: dcerpc.EMSMDB.UUID, Minor: 82}); !errors.Is(err, dcerpc.ErrNotRegistered) {
		t.Fatalf("ept_map of EMSMDB v0.82, newer than the CAS's: %v, want not registered", err)
	}
	c := rpcDial(t, "127.0.0.46", ports[1], ClientAccess)
	if _, err := exchange(t, c, Frame{Type: TypeLogon, Payload: []byte{0}}); !hasStatus(err, MAPILogonFailed) {
		t.Fatalf("logon without a mailbox: %v", err)
	}
	if _, err := exchange(t, c, Frame{Type: TypeLogon, Payload: appendStr(nil, "mbx1")}); err != nil {
		t.Fatalf("logon on the same connection: %v", err)
	}
	if st := cas.Stats(); st.ProtocolErrors != 0 || st.Lookups != 2 {
		t.Errorf("counted %d protocol errors and %d lookups, want 0 and 2", st.ProtocolErrors, st.Lookups)
	}
}
