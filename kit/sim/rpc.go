package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/stickylb/stickylb/dcerpc"
)

// The simulated CAS speaks DCE/RPC (ncacn_ip_tcp) as Exchange does, with
// package dcerpc: its endpoint mapper answers a bind of the endpoint
// mapper's interface and ept_map for EMSMDB and NSPI with the ports it
// serves them on; each service port answers a bind of its own interface
// (EMSMDB on RPC Client Access, NSPI on the Address Book) and then
// requests, whose stubs carry the lab's frames (docs/lab-protocol.md).
// Exchange's stubs are NDR and, by default, sealed; the lab's are
// neither, but everything a balancer can see of Exchange's traffic (the
// PDU headers, the bind and its answer, the endpoint mapper's answers,
// faults) is what Exchange would send.

// The operations the lab's frames travel as: the EMSMDB and NSPI calls
// Outlook and Unity make for a logon, work in it and its end
// ([MS-OXCRPC] 3.1.4, [MS-OXNSPI] 3.1.4.1).
const (
	opEcDoDisconnect = 1
	opEcDoConnectEx  = 10
	opEcDoRpcExt2    = 11
	opNspiGetProps   = 9
)

// rpcBuf is what one PDU is read into: above package dcerpc's largest
// fragment (5,840 bytes), so that ReadPDU allocates nothing.
const rpcBuf = 8 << 10

// Interface is the DCE/RPC interface a service's port binds.
func (s Service) Interface() dcerpc.Syntax {
	return [...]dcerpc.Syntax{dcerpc.EPM, dcerpc.EMSMDB, dcerpc.NSPI}[s]
}

// opnum is the operation a request frame of type typ travels as on
// svc's interface; 0xffff, which no interface serves, for a type svc
// does not take.
func opnum(svc Service, typ byte) uint16 {
	switch {
	case svc == ClientAccess && typ == TypeLogon:
		return opEcDoConnectEx
	case svc == ClientAccess && typ == TypeOp:
		return opEcDoRpcExt2
	case svc == ClientAccess && typ == TypeLogoff:
		return opEcDoDisconnect
	case svc == AddressBook && typ == TypeOp:
		return opNspiGetProps
	}
	return 0xffff
}

// serves says whether a server of have answers a client that asks for
// asked: the same UUID and major version, and a minor version no newer
// (C706 12.6.3.1).
func serves(have, asked dcerpc.Syntax) bool {
	return have.UUID == asked.UUID && have.Major == asked.Major && asked.Minor <= have.Minor
}

// rpcConn is one connection a CAS serves.
type rpcConn struct {
	c     *CAS
	conn  net.Conn
	svc   Service
	port  int
	bound bool
}

// serve answers PDUs on one connection until the client closes it, it
// idles out, or it sends something malformed.
func (c *CAS) serve(conn net.Conn, svc Service) {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
		conn.Close()
	}()
	rca, ab := c.Ports()
	port := [...]int{c.cfg.EPMPort, rca, ab}[svc]
	s := &rpcConn{c: c, conn: conn, svc: svc, port: port}
	r := bufio.NewReaderSize(conn, rpcBuf)
	buf := make([]byte, 0, rpcBuf)
	for {
		conn.SetReadDeadline(time.Now().Add(c.cfg.ConnIdle))
		p, err := dcerpc.ReadPDU(r, buf)
		if err != nil {
			if errors.Is(err, dcerpc.ErrMalformed) {
				s.malformed(err)
			}
			return
		}
		out, fatal := s.pdu(p)
		if out != nil {
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
		if fatal {
			return
		}
	}
}

// malformed counts and logs input that is not what the CAS serves. The
// connection then closes, as an RPC runtime closes it.
func (s *rpcConn) malformed(err error) {
	s.c.protoErrs.Add(1)
	s.c.cfg.Log.Warn("malformed request; closing the connection", "cas", s.c.cfg.Name,
		"service", s.svc, "client", s.conn.RemoteAddr(), "error", err)
}

// pdu answers one PDU. fatal says the connection closes after the
// answer, if any.
func (s *rpcConn) pdu(p dcerpc.PDU) (out []byte, fatal bool) {
	switch p.Type {
	case dcerpc.TypeBind:
		iface, err := dcerpc.ParseBind(p)
		if err != nil {
			s.malformed(err)
			return dcerpc.FaultPDU(p.CallID, dcerpc.FaultProtocol), true
		}
		s.bound = serves(s.svc.Interface(), iface)
		if !s.bound {
			s.c.rejected.Add(1)
		}
		return dcerpc.BindAck(p.CallID, s.bound, strconv.Itoa(s.port)), false
	case dcerpc.TypeRequest:
		call, whole, err := dcerpc.ParseRequest(p)
		switch {
		case !s.bound:
			s.malformed(fmt.Errorf("request of call %d before a bind of %s", p.CallID, s.svc.Interface()))
			return dcerpc.FaultPDU(p.CallID, dcerpc.FaultUnknownIf), true
		case err != nil || !whole:
			s.malformed(fmt.Errorf("request of call %d: not one whole fragment: %w", p.CallID, err))
			return dcerpc.FaultPDU(p.CallID, dcerpc.FaultProtocol), true
		case s.svc == EndpointMapper:
			return s.eptMap(p, call), false
		}
		return s.call(p.CallID, call)
	}
	s.malformed(fmt.Errorf("PDU type %d", p.Type))
	return nil, true
}

// eptMap answers ept_map: EMSMDB and NSPI at the CAS's ports, any other
// interface not registered.
func (s *rpcConn) eptMap(p dcerpc.PDU, call dcerpc.Call) []byte {
	if call.Opnum != dcerpc.OpMap {
		s.c.protoErrs.Add(1)
		return dcerpc.FaultPDU(p.CallID, dcerpc.FaultOpRange)
	}
	args, err := dcerpc.ParseMapRequest(call.Stub, p.Order)
	if err != nil {
		s.c.protoErrs.Add(1)
		return dcerpc.FaultPDU(p.CallID, dcerpc.FaultBadStubData)
	}
	addr, _ := netip.ParseAddr(s.c.cfg.Host)
	var eps []dcerpc.Endpoint
	for _, svc := range []Service{ClientAccess, AddressBook} {
		if serves(svc.Interface(), args.Tower.Interface) {
			rca, ab := s.c.Ports()
			port := [...]int{0, rca, ab}[svc]
			eps = append(eps, dcerpc.Endpoint{Interface: svc.Interface(), Port: uint16(port), Addr: addr})
		}
	}
	s.c.lookups.Add(1)
	return dcerpc.Response(p.CallID, dcerpc.MapResponse(args.MaxTowers, eps))
}

// call answers a request on a service port: its stub is a lab frame of
// the type its operation carries. An operation the interface does not
// have is a fault; a stub that is not such a frame is a malformed
// request (MAPI_E_CALL_FAILED, then the connection closes).
func (s *rpcConn) call(callID uint32, call dcerpc.Call) ([]byte, bool) {
	f, err := ReadFrame(bytes.NewReader(call.Stub), nil)
	switch {
	case err == nil && opnum(s.svc, f.Type) == call.Opnum:
	case !validOp(s.svc, call.Opnum):
		s.c.protoErrs.Add(1)
		return dcerpc.FaultPDU(callID, dcerpc.FaultOpRange), false
	case err == nil:
		s.c.protoErrs.Add(1)
		return s.reply(callID, ErrorFrame(MAPICallFailed, s.c.cfg.Name,
			fmt.Sprintf("request type %#02x is not served as operation %d of %s", f.Type, call.Opnum, s.svc))), true
	default:
		s.malformed(err)
		return s.reply(callID, ErrorFrame(MAPICallFailed, s.c.cfg.Name, err.Error())), true
	}
	reply, fatal := s.c.handle(s.svc, f)
	return s.reply(callID, reply), fatal
}

func (s *rpcConn) reply(callID uint32, f Frame) []byte {
	return dcerpc.Response(callID, AppendFrame(nil, f))
}

// validOp says whether svc's interface has operation op.
func validOp(svc Service, op uint16) bool {
	for _, typ := range []byte{TypeLogon, TypeOp, TypeLogoff} {
		if opnum(svc, typ) == op {
			return true
		}
	}
	return false
}
