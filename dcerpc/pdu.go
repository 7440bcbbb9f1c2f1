// Package dcerpc writes and reads the few connection-oriented DCE/RPC
// PDUs (ncacn_ip_tcp) that stickylb's RPC health check needs: bind,
// bind_ack and bind_nak, request, response and fault, and the endpoint
// mapper's ept_map with its protocol tower. It is not an RPC runtime: no
// authentication, no NDR beyond ept_map's own arguments, no calls other
// than the check's. For the lab's simulated CAS (kit/sim) it also has a
// server's side: the answers (server.go) and the readers of a client's
// request and ept_map arguments (call.go).
//
// Followed: The Open Group C706 (DCE 1.1: Remote Procedure Call), chapter
// 12 "Connection-oriented RPC PDUs" (12.6: the PDU formats) and appendix
// L "Protocol Tower Encoding"; chapter 14 "Transfer Syntax NDR" for the
// arguments; MS-RPCE 2.2.1.2 (ncacn_ip_tcp) and 2.2.2.13 (the endpoint
// mapper on TCP 135, ept_map as opnum 3 of interface
// e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0). Every reader treats its
// input as hostile: lengths are checked before use and nothing is
// allocated beyond a fixed bound.
package dcerpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// PDU types (C706 12.6.4.1).
const (
	TypeRequest  = 0
	TypeResponse = 2
	TypeFault    = 3
	TypeBind     = 11
	TypeBindAck  = 12
	TypeBindNak  = 13
	// TypeAlterContext and its answer add a presentation context to
	// an open association.
	TypeAlterContext     = 14
	TypeAlterContextResp = 15
)

// Header flags (C706 12.6.3.1).
const (
	flagFirstFrag = 0x01
	flagLastFrag  = 0x02
)

const (
	headerLen = 16
	// maxFrag is the fragment size this client offers and accepts.
	maxFrag = 5840
	// MaxRequestStub is the largest stub Request fits in one
	// fragment of maxFrag: less the header and the request's 8 bytes.
	MaxRequestStub = maxFrag - headerLen - 8
	// MaxStub bounds a response reassembled from fragments.
	MaxStub = 64 << 10
	// maxFragments bounds the fragments of one response, whatever they
	// carry: 1432 bytes is the smallest fragment a peer must accept
	// (C706 appendix K, MustRecvFragSize), so MaxStub comes in at most
	// 47 of that size. Without it, fragments of 24 bytes never marked
	// last kept a check reading until its deadline: 7.6 CPU seconds in
	// 10 s, against 0.02 for the sender (issue 33). With it a response
	// costs at most maxFragments*maxFrag bytes read (365 KiB).
	maxFragments = 64
)

// ErrMalformed says a peer sent bytes that are not a valid PDU.
var ErrMalformed = errors.New("malformed DCE/RPC PDU")

// UUID is a DCE UUID, held as written ("a4f1db00-ca47-1067-b31f-00dd010662da").
type UUID [16]byte

// ParseUUID reads the usual text form.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%q is not a UUID such as \"a4f1db00-ca47-1067-b31f-00dd010662da\"", s)
	}
	hex := s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	for i := range 16 {
		hi, lo := unhex(hex[2*i]), unhex(hex[2*i+1])
		if hi < 0 || lo < 0 {
			return UUID{}, fmt.Errorf("%q is not a UUID: %q is not hexadecimal", s, hex[2*i:2*i+2])
		}
		u[i] = byte(hi<<4 | lo)
	}
	return u, nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (u UUID) String() string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// appendNDR writes u as NDR does on a little-endian stream: the first
// three fields little-endian, the last eight bytes as they are.
func (u UUID) appendNDR(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, binary.BigEndian.Uint32(u[0:4]))
	b = binary.LittleEndian.AppendUint16(b, binary.BigEndian.Uint16(u[4:6]))
	b = binary.LittleEndian.AppendUint16(b, binary.BigEndian.Uint16(u[6:8]))
	return append(b, u[8:]...)
}

// Syntax is an interface or transfer syntax: a UUID and a version.
type Syntax struct {
	UUID         UUID
	Major, Minor uint16
}

func (s Syntax) String() string { return fmt.Sprintf("%s v%d.%d", s.UUID, s.Major, s.Minor) }

func (s Syntax) appendNDR(b []byte) []byte {
	b = s.UUID.appendNDR(b)
	b = binary.LittleEndian.AppendUint16(b, s.Major)
	return binary.LittleEndian.AppendUint16(b, s.Minor)
}

func mustSyntax(uuid string, major, minor uint16) Syntax {
	u, err := ParseUUID(uuid)
	if err != nil {
		panic(err)
	}
	return Syntax{u, major, minor}
}

// The syntaxes stickylb uses. EMSMDB and NSPI are Exchange's RPC Client
// Access and Address Book interfaces ([MS-OXCRPC] 1.9, [MS-OXNSPI] 1.9).
var (
	NDR    = mustSyntax("8a885d04-1ceb-11c9-9fe8-08002b104860", 2, 0)
	EPM    = mustSyntax("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, 0)
	EMSMDB = mustSyntax("a4f1db00-ca47-1067-b31f-00dd010662da", 0, 81)
	NSPI   = mustSyntax("f5cc5a18-4264-101a-8c59-08002b2f8426", 56, 0)
)

// Name is the short name of the interfaces stickylb knows (EMSMDB,
// NSPI, EPM for the endpoint mapper, at their versions), else "".
func (s Syntax) Name() string {
	switch s {
	case EMSMDB:
		return "EMSMDB"
	case NSPI:
		return "NSPI"
	case EPM:
		return "EPM"
	}
	return ""
}

// header writes a PDU header for a body of n bytes.
func header(ptype byte, callID uint32, n int) []byte {
	b := make([]byte, headerLen, headerLen+n)
	b[0], b[1], b[2], b[3] = 5, 0, ptype, flagFirstFrag|flagLastFrag
	b[4] = 0x10 // little-endian integers, ASCII, IEEE floats
	binary.LittleEndian.PutUint16(b[8:], uint16(headerLen+n))
	binary.LittleEndian.PutUint32(b[12:], callID)
	return b
}

// Bind is a bind PDU offering iface with the NDR transfer syntax
// (C706 12.6.4.3).
func Bind(callID uint32, iface Syntax) []byte {
	body := binary.LittleEndian.AppendUint16(nil, maxFrag) // max_xmit_frag
	body = binary.LittleEndian.AppendUint16(body, maxFrag) // max_recv_frag
	body = append(body, 0, 0, 0, 0)                        // assoc_group_id
	body = append(body, 1, 0, 0, 0)                        // one context element
	body = append(body, 0, 0, 1, 0)                        // context id 0, one transfer syntax
	body = iface.appendNDR(body)
	body = NDR.appendNDR(body)
	return append(header(TypeBind, callID, len(body)), body...)
}

// AlterContext is an alter_context PDU offering iface on an open
// association: a bind's layout under its own type (C706 12.6.4.1).
func AlterContext(callID uint32, iface Syntax) []byte {
	b := Bind(callID, iface)
	b[2] = TypeAlterContext
	return b
}

// Request is a request PDU calling opnum with the given stub
// (C706 12.6.4.9).
func Request(callID uint32, opnum uint16, stub []byte) []byte {
	body := binary.LittleEndian.AppendUint32(nil, uint32(len(stub))) // alloc_hint
	body = binary.LittleEndian.AppendUint16(body, 0)                 // context id
	body = binary.LittleEndian.AppendUint16(body, opnum)
	body = append(body, stub...)
	return append(header(TypeRequest, callID, len(body)), body...)
}

// PDU is one PDU as read: its type, flags, call id, integer byte order
// and body (the bytes after the header, less any authentication trailer).
type PDU struct {
	Type   byte
	Flags  byte
	CallID uint32
	Order  binary.ByteOrder
	Body   []byte
}

// ReadPDU reads one PDU from r. buf, if large enough, holds the bytes.
func ReadPDU(r io.Reader, buf []byte) (PDU, error) {
	if cap(buf) < maxFrag {
		buf = make([]byte, 0, maxFrag)
	}
	h := buf[:headerLen]
	if _, err := io.ReadFull(r, h); err != nil {
		return PDU{}, err
	}
	n, err := fragLen(h, cap(buf))
	if err != nil {
		return PDU{}, err
	}
	b := buf[:n]
	if _, err := io.ReadFull(r, b[headerLen:]); err != nil {
		return PDU{}, fmt.Errorf("%w: fragment cut short: %w", ErrMalformed, err)
	}
	return decodePDU(b)
}

// fragLen checks a PDU header and returns its fragment length, which is
// at most limit.
func fragLen(h []byte, limit int) (int, error) {
	if h[0] != 5 || h[1] != 0 {
		return 0, fmt.Errorf("%w: version %d.%d, not 5.0", ErrMalformed, h[0], h[1])
	}
	n := int(byteOrder(h).Uint16(h[8:]))
	if n < headerLen || n > limit {
		return 0, fmt.Errorf("%w: fragment length %d", ErrMalformed, n)
	}
	return n, nil
}

// byteOrder is the integer representation a header's data
// representation label names (C706 14.1).
func byteOrder(h []byte) binary.ByteOrder {
	if h[4]&0xf0 == 0 {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// decodePDU reads one whole fragment b, whose header fragLen has
// checked. The PDU's body is part of b.
func decodePDU(b []byte) (PDU, error) {
	order := byteOrder(b)
	auth := int(order.Uint16(b[10:]))
	body := b[headerLen:]
	if auth > 0 {
		if auth+8 > len(body) {
			return PDU{}, fmt.Errorf("%w: authentication trailer of %d bytes in a body of %d", ErrMalformed, auth, len(body))
		}
		body = body[:len(body)-auth-8]
	}
	return PDU{Type: b[2], Flags: b[3], CallID: order.Uint32(b[12:]), Order: order, Body: body}, nil
}

// BindResult is what a server answered to a bind.
type BindResult struct {
	Accepted bool
	// Result and Reason are the first presentation result's codes
	// (C706 12.6.3.1: 0 acceptance, 1 user rejection, 2 provider
	// rejection), or for a bind_nak, the reject reason.
	Result, Reason uint16
	Nak            bool
}

func (r BindResult) String() string {
	switch {
	case r.Accepted:
		return "accepted"
	case r.Nak:
		return fmt.Sprintf("bind_nak, reject reason %d", r.Reason)
	case r.Reason == 1:
		return fmt.Sprintf("rejected (result %d): abstract syntax (interface) not supported", r.Result)
	case r.Reason == 2:
		return fmt.Sprintf("rejected (result %d): proposed transfer syntaxes not supported", r.Result)
	}
	return fmt.Sprintf("rejected (result %d, reason %d)", r.Result, r.Reason)
}

// ParseBindReply reads a bind_ack or bind_nak (C706 12.6.4.4, 12.6.4.5).
func ParseBindReply(p PDU) (BindResult, error) {
	b := p.Body
	switch p.Type {
	case TypeBindNak:
		if len(b) < 2 {
			return BindResult{}, fmt.Errorf("%w: bind_nak of %d bytes", ErrMalformed, len(b))
		}
		return BindResult{Nak: true, Reason: p.Order.Uint16(b)}, nil
	case TypeBindAck:
	default:
		return BindResult{}, fmt.Errorf("%w: PDU type %d in answer to a bind", ErrMalformed, p.Type)
	}
	if len(b) < 10 {
		return BindResult{}, fmt.Errorf("%w: bind_ack of %d bytes", ErrMalformed, len(b))
	}
	off := 10 + int(p.Order.Uint16(b[8:])) // past max_xmit, max_recv, assoc_group and sec_addr
	off += pad4(headerLen + off)
	if off+4+4 > len(b) || b[off] == 0 {
		return BindResult{}, fmt.Errorf("%w: bind_ack without a result", ErrMalformed)
	}
	res, reason := p.Order.Uint16(b[off+4:]), p.Order.Uint16(b[off+6:])
	return BindResult{Accepted: res == 0, Result: res, Reason: reason}, nil
}

// pad4 is how many bytes take n to a multiple of 4.
func pad4(n int) int { return (4 - n%4) % 4 }

// Fault is a fault PDU's status (C706 12.6.4.7; appendix E for the codes).
type Fault uint32

func (f Fault) Error() string { return fmt.Sprintf("the server answered with fault 0x%08x", uint32(f)) }

// ReadResponse reads the response to call callID, joining its fragments,
// at most maxFragments of them. A fault comes back as a Fault error. r
// should be buffered: every fragment is two reads.
func ReadResponse(r io.Reader, callID uint32) ([]byte, binary.ByteOrder, error) {
	var stub []byte
	buf := make([]byte, 0, maxFrag)
	for range maxFragments {
		p, err := ReadPDU(r, buf)
		if err != nil {
			return nil, nil, err
		}
		if p.CallID != callID {
			return nil, nil, fmt.Errorf("%w: answer to call %d, want %d", ErrMalformed, p.CallID, callID)
		}
		if len(p.Body) < 8 {
			return nil, nil, fmt.Errorf("%w: response body of %d bytes", ErrMalformed, len(p.Body))
		}
		switch p.Type {
		case TypeFault:
			if len(p.Body) < 12 {
				return nil, nil, fmt.Errorf("%w: fault of %d bytes", ErrMalformed, len(p.Body))
			}
			return nil, nil, Fault(p.Order.Uint32(p.Body[8:]))
		case TypeResponse:
		default:
			return nil, nil, fmt.Errorf("%w: PDU type %d in answer to a request", ErrMalformed, p.Type)
		}
		if len(stub)+len(p.Body)-8 > MaxStub {
			return nil, nil, fmt.Errorf("%w: response over %d bytes", ErrMalformed, MaxStub)
		}
		stub = append(stub, p.Body[8:]...)
		if p.Flags&flagLastFrag != 0 {
			return stub, p.Order, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: response not ended after %d fragments", ErrMalformed, maxFragments)
}
