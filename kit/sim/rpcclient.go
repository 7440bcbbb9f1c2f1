package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// The fleet's side of DCE/RPC: each connection binds its service's
// interface first, and then sends its frames as requests, one call at a
// time, with call ids counting up from the bind's.

// service is the port a mailbox's operation goes to.
func service(svc int) Service { return [...]Service{ClientAccess, AddressBook}[svc] }

// open dials port and binds svc's interface there.
func (s *mailbox) open(ctx context.Context, svc Service, port int) (*clientConn, error) {
	c, err := s.dial(ctx, port)
	if err != nil {
		return nil, err
	}
	c.svc, c.r = svc, bufio.NewReaderSize(c.Conn, rpcBuf)
	c.SetDeadline(time.Now().Add(s.f.cfg.Timeout))
	if err := c.bind(); err != nil {
		c.Close()
		return nil, &connError{c: c, err: err}
	}
	return c, nil
}

// bind binds the connection's interface and reads the answer: a
// rejection is an error wrapping dcerpc.ErrBindRejected.
func (c *clientConn) bind() error {
	c.callID++
	iface := c.svc.Interface()
	if _, err := c.Write(dcerpc.Bind(c.callID, iface)); err != nil {
		return err
	}
	p, err := dcerpc.ReadPDU(c.r, make([]byte, 0, rpcBuf))
	if err != nil {
		return fmt.Errorf("bind %s: %w", iface, err)
	}
	res, err := dcerpc.ParseBindReply(p)
	switch {
	case err != nil:
		return fmt.Errorf("bind %s: %w", iface, err)
	case !res.Accepted:
		return fmt.Errorf("bind %s: %w: %s", iface, dcerpc.ErrBindRejected, res)
	}
	return nil
}

// rpc calls op with stub and returns the response's stub; a fault is a
// dcerpc.Fault error.
func (c *clientConn) rpc(op uint16, stub []byte) ([]byte, binary.ByteOrder, error) {
	c.callID++
	if _, err := c.Write(dcerpc.Request(c.callID, op, stub)); err != nil {
		return nil, nil, err
	}
	return dcerpc.ReadResponse(c.r, c.callID)
}

// send sends request frame f as its operation and reads the reply frame.
// A fault comes back as a *StatusError. nca_s_unk_if, the server's
// answer to a request on a connection it holds no bind of, is
// MAPI_E_NETWORK_ERROR, as MAPI reports a failed RPC call: the bind, the
// connection's state, lives on another CAS (a balancer moved the flow).
// Any other fault keeps its own status.
func (c *clientConn) send(f Frame) (Frame, error) {
	stub, _, err := c.rpc(opnum(c.svc, f.Type), AppendFrame(nil, f))
	var fault dcerpc.Fault
	switch {
	case errors.As(err, &fault) && fault == dcerpc.FaultUnknownIf:
		return Frame{}, &StatusError{Status: MAPINetworkError, Fault: uint32(fault),
			Msg: "the server holds no bind of this connection: another CAS does"}
	case errors.As(err, &fault):
		return Frame{}, &StatusError{Status: uint32(fault), Fault: uint32(fault), Msg: fault.Error()}
	case err != nil:
		return Frame{}, &connError{c: c, err: err}
	}
	r, err := ReadFrame(bytes.NewReader(stub), c.buf)
	if err != nil {
		return Frame{}, &connError{c: c, err: err}
	}
	return r, nil
}

// lookup asks the endpoint mapper for the port of each of ifaces with
// ept_map, as MAPI does for EMSMDB and NSPI. An interface it does not
// know is a *StatusError with ept_map's status.
func (c *clientConn) lookup(ifaces ...dcerpc.Syntax) ([]int, error) {
	var ports []int
	for _, iface := range ifaces {
		stub, order, err := c.rpc(dcerpc.OpMap, dcerpc.MapRequest(iface))
		if err != nil {
			return nil, &connError{c: c, err: fmt.Errorf("ept_map %s: %w", iface, err)}
		}
		res, err := dcerpc.ParseMapResponse(stub, order)
		switch {
		case err != nil:
			return nil, &connError{c: c, err: fmt.Errorf("ept_map %s: %w", iface, err)}
		case res.Status != 0 || len(res.Ports) == 0:
			st := res.Status
			if st == 0 {
				st = dcerpc.EptNotRegistered
			}
			return nil, &StatusError{Status: st, Msg: fmt.Sprintf("ept_map %s: %v", iface, dcerpc.ErrNotRegistered)}
		}
		ports = append(ports, int(res.Ports[0]))
	}
	return ports, nil
}
