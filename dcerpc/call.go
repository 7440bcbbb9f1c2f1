package dcerpc

import (
	"encoding/binary"
	"fmt"
)

// The readers of a server's side, for a simulated endpoint mapper or
// service (the lab): a request's call, and ept_map's arguments. Like
// every reader here they take hostile input.

// flagObjectUUID says a request carries an object UUID after its opnum
// (C706 12.6.3.1, PFC_OBJECT_UUID).
const flagObjectUUID = 0x80

// Fault statuses a server answers with (C706 appendix E), and
// RPC_X_BAD_STUB_DATA, which Windows answers a stub it cannot read with.
const (
	FaultOpRange     = 0x1c010002 // nca_s_op_rng_error: no such operation
	FaultUnknownIf   = 0x1c010003 // nca_s_unk_if: the interface is not bound
	FaultProtocol    = 0x1c01000b // nca_s_proto_error
	FaultBadStubData = 0x000006f7 // RPC_X_BAD_STUB_DATA
)

// Call is a request PDU's call: its presentation context, its operation
// and its stub (C706 12.6.4.9). Stub is part of the PDU's body.
type Call struct {
	ContextID, Opnum uint16
	Stub             []byte
}

// ParseRequest reads a request's call. A request of several fragments
// is not joined: Whole says whether this fragment is the whole call.
func ParseRequest(p PDU) (c Call, whole bool, err error) {
	if p.Type != TypeRequest || len(p.Body) < 8 {
		return Call{}, false, fmt.Errorf("%w: not a request (type %d, %d bytes)", ErrMalformed, p.Type, len(p.Body))
	}
	b := p.Body
	c = Call{ContextID: p.Order.Uint16(b[4:]), Opnum: p.Order.Uint16(b[6:])}
	off := 8
	if p.Flags&flagObjectUUID != 0 {
		if len(b) < off+16 {
			return Call{}, false, fmt.Errorf("%w: request with an object UUID in %d bytes", ErrMalformed, len(b))
		}
		off += 16
	}
	c.Stub = b[off:]
	return c, p.Flags&(flagFirstFrag|flagLastFrag) == flagFirstFrag|flagLastFrag, nil
}

// MapArgs are ept_map's arguments as a client sends them: the tower it
// asks about (its interface is Endpoint.Interface) and how many towers
// it takes.
type MapArgs struct {
	Tower     Endpoint
	MaxTowers uint32
}

// ParseMapRequest reads ept_map's request stub (C706 appendix O;
// MapRequest writes it): obj, a unique pointer to a UUID that may be
// null; map_tower, a pointer to a tower (twr_t: a conformant array of
// tower_length bytes); entry_handle, a 20-byte context handle; and
// max_towers.
func ParseMapRequest(stub []byte, order binary.ByteOrder) (MapArgs, error) {
	r := ndrReader{b: stub, order: order}
	if r.u32() != 0 {
		r.skip(16) // the object UUID
	}
	if ref := r.u32(); ref == 0 || r.err != nil {
		return MapArgs{}, fmt.Errorf("%w: ept_map without a tower", ErrMalformed)
	}
	count, n := r.u32(), r.u32()
	if r.err != nil || count != n {
		return MapArgs{}, fmt.Errorf("%w: ept_map tower of %d bytes in an array of %d", ErrMalformed, n, count)
	}
	t := r.take(int(n))
	r.skip(pad4(r.off))
	r.skip(20) // entry_handle
	args := MapArgs{MaxTowers: r.u32()}
	if r.err != nil {
		return MapArgs{}, fmt.Errorf("%w: ept_map request cut short", ErrMalformed)
	}
	e, err := ParseTower(t)
	if err != nil {
		return MapArgs{}, err
	}
	args.Tower = e
	return args, nil
}

// FaultPDU is a fault PDU of call callID with status (C706 12.6.4.7).
func FaultPDU(callID, status uint32) []byte {
	body := binary.LittleEndian.AppendUint32(nil, 0) // alloc_hint
	body = append(body, 0, 0, 0, 0)                  // context id, cancel count, reserved
	body = binary.LittleEndian.AppendUint32(body, status)
	body = append(body, 0, 0, 0, 0) // reserved
	return append(header(TypeFault, callID, len(body)), body...)
}
