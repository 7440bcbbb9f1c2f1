package dcerpc

import (
	"encoding/binary"
)

// The writers of a server's side, for a simulated endpoint mapper or
// service (the lab, tests): just enough framing for a real client to
// bind and call.

// BindAck is a bind_ack of call callID: the first presentation context
// accepted with NDR, or rejected as an abstract syntax not supported
// (C706 12.6.4.4). secAddr is the port the server names ("135").
func BindAck(callID uint32, accepted bool, secAddr string) []byte {
	body := binary.LittleEndian.AppendUint16(nil, maxFrag) // max_xmit_frag
	body = binary.LittleEndian.AppendUint16(body, maxFrag) // max_recv_frag
	body = append(body, 0x53, 0xf0, 0, 0)                  // assoc_group_id
	sa := append([]byte(secAddr), 0)
	body = binary.LittleEndian.AppendUint16(body, uint16(len(sa)))
	body = append(body, sa...)
	body = append(body, make([]byte, pad4(headerLen+len(body)))...)
	body = append(body, 1, 0, 0, 0) // one result
	if accepted {
		body = append(body, 0, 0, 0, 0)
		body = NDR.appendNDR(body)
	} else {
		body = append(body, 2, 0, 1, 0) // provider rejection: abstract syntax not supported
		body = append(body, make([]byte, 20)...)
	}
	return append(header(TypeBindAck, callID, len(body)), body...)
}

// Response is a response PDU of call callID carrying stub, in one
// fragment (C706 12.6.4.10).
func Response(callID uint32, stub []byte) []byte {
	body := binary.LittleEndian.AppendUint32(nil, uint32(len(stub))) // alloc_hint
	body = append(body, 0, 0, 0, 0)                                  // context id, cancel count, reserved
	body = append(body, stub...)
	return append(header(TypeResponse, callID, len(body)), body...)
}

// MapResponse is the NDR stub of ept_map's answer handing out eps
// (status 0), or none with EptNotRegistered, to a client that asked for
// at most max towers. The towers array is [size_is(max_towers),
// length_is(*num_towers)] (C706 appendix O), so its max count is the
// client's max_towers, not the number returned; eps beyond max are left
// out.
func MapResponse(max uint32, eps []Endpoint) []byte {
	if uint32(len(eps)) > max {
		eps = eps[:max]
	}
	b := make([]byte, 20) // entry_handle
	b = binary.LittleEndian.AppendUint32(b, uint32(len(eps)))
	b = binary.LittleEndian.AppendUint32(b, max) // max count
	b = binary.LittleEndian.AppendUint32(b, 0)   // offset
	b = binary.LittleEndian.AppendUint32(b, uint32(len(eps)))
	for i := range eps {
		b = binary.LittleEndian.AppendUint32(b, uint32(3+i)) // referent
	}
	for _, e := range eps {
		t := e.Tower()
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t)))
		b = append(b, t...)
		b = append(b, make([]byte, pad4(len(t)))...)
	}
	status := uint32(0)
	if len(eps) == 0 {
		status = EptNotRegistered
	}
	return binary.LittleEndian.AppendUint32(b, status)
}

// BindNak is a bind_nak of call callID with the given reject reason
// (C706 12.6.4.5; 4 is "local limit exceeded"), offering version 5.0.
func BindNak(callID uint32, reason uint16) []byte {
	body := binary.LittleEndian.AppendUint16(nil, reason)
	body = append(body, 1, 5, 0) // one protocol version supported: 5.0
	return append(header(TypeBindNak, callID, len(body)), body...)
}

// AlterContextResp is the answer to an alter_context: a bind_ack's
// layout under its own type (C706 12.6.4.2).
func AlterContextResp(callID uint32, accepted bool) []byte {
	b := BindAck(callID, accepted, "")
	b[2] = TypeAlterContextResp
	return b
}

// FaultResponse is a fault PDU of call callID with status, such as
// 0x1c010003 (nca_s_unk_if) (C706 12.6.4.7).
func FaultResponse(callID, status uint32) []byte {
	body := make([]byte, 8, 16) // alloc_hint, context id, cancel count, reserved
	body = binary.LittleEndian.AppendUint32(body, status)
	body = append(body, 0, 0, 0, 0) // reserved
	return append(header(TypeFault, callID, len(body)), body...)
}
